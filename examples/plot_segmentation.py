"""
Semantic segmentation with a U-Net
==================================

Semantic segmentation gives every pixel a class. A U-Net's encoder shrinks
the image step by step to see the context (what object is this?); its
decoder grows it back and, through skip connections, reuses the encoder's
high-resolution maps to draw precise boundaries.
:class:`~skvision.segmentation.UNetSegmenter` trains one with ``fit(X,
masks)``, predicts masks with ``predict`` and scores the mean intersection
over union (IoU).
"""

# %%
# Shapes: which pixels belong to a circle, a square or a triangle?
# -----------------------------------------------------------------
# 240 synthetic 64x64 images for training, 60 held out. The held-out mean
# IoU (overall and per class) is printed below; the gallery states the
# script's run time at its foot.
import matplotlib.pyplot as plt
import numpy as np
from scipy import ndimage
from skimage import data
from skimage.filters import threshold_otsu

from skvision.datasets import make_shapes
from skvision.metrics import mean_iou
from skvision.plotting import plot_masks
from skvision.segmentation import UNetSegmenter

X, masks = make_shapes(n_samples=300, image_size=64, task="segmentation", random_state=0)
segmenter = UNetSegmenter(random_state=0).fit(X[:240], masks[:240])
predicted = segmenter.predict(X[240:])
print(f"held-out mean IoU: {segmenter.score(X[240:], masks[240:]):.3f}")
print("per class:", np.round(mean_iou(masks[240:], predicted, average=None), 3))
names = {1: "circle", 2: "square", 3: "triangle"}
plot_masks(X[240:244], masks[240:244], predicted[:4], class_names=names, n_cols=4)

# %%
# Coins: a real photograph
# ------------------------
# scikit-image's coins photo, with a mask from Otsu's threshold (holes
# filled, specks removed). The U-Net learns from random 64x64 crops of the
# left two thirds and segments the right third, which it never saw, at its
# full size (the network pads any size to a multiple of 2**depth). The
# output below gives the mean IoU against the threshold mask on the unseen
# third (120 crops, 10 epochs).
coins = data.coins()
mask = ndimage.binary_fill_holes(coins > threshold_otsu(coins))
mask = ndimage.binary_opening(mask, iterations=2).astype(np.int64)
split = 2 * coins.shape[1] // 3
rng = np.random.default_rng(0)
rows = rng.integers(0, coins.shape[0] - 64, 120)
cols = rng.integers(0, split - 64, 120)
crops = np.stack([coins[r:r + 64, c:c + 64] for r, c in zip(rows, cols)])
crop_masks = np.stack([mask[r:r + 64, c:c + 64] for r, c in zip(rows, cols)])
coin_segmenter = UNetSegmenter(epochs=10, random_state=0).fit(crops, crop_masks)
right = coins[np.newaxis, :, split:]
right_pred = coin_segmenter.predict(right)
print(f"unseen right third: mean IoU {mean_iou(mask[:, split:], right_pred[0]):.3f}")
plot_masks(right, mask[np.newaxis, :, split:], right_pred, class_names={1: "coin"},
           n_cols=2, ax_size=3.0)
plt.show()
