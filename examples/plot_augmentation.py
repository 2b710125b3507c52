"""
Data augmentation against overfitting
=====================================

Data augmentation trains a network on randomly altered copies of the
training images — flipped, cropped, rotated, recolored — that keep their
label, so the network cannot memorize pixels and has to learn what stays the
same. :class:`~skvision.ImageAugmenter` draws the random parameters for every
image separately and transforms whole batches at once (one resampling per
image for all geometric steps), inside the training loop
(``augment=``), as an offline sampler (``fit_resample``) or once
(``transform``).
"""

# %%
# What the augmentations look like
# --------------------------------
# Eight random versions of scikit-image's astronaut with the "standard"
# preset (random resized crop, flip, small rotation, color jitter), and with
# the "strong" one, which adds shear, hue, grayscale, blur and erasing.
import numpy as np
from skimage import data
from sklearn.model_selection import train_test_split

from skvision import CNNClassifier, ImageAugmenter
from skvision.datasets import load_digit_images
from skvision.plotting import plot_images

astronaut = data.astronaut()[::4, ::4]  # 128 x 128 RGB, uint8
batch = np.repeat(astronaut[np.newaxis], 8, axis=0)
standard = ImageAugmenter.preset("standard", random_state=0).fit_transform(batch)
strong = ImageAugmenter.preset("strong", random_state=0).fit_transform(batch)
plot_images(np.concatenate([standard, strong]), titles=["standard"] * 8 + ["strong"] * 8,
            n_cols=8)

# %%
# Less overfitting on a small training set
# ----------------------------------------
# A CNN trained on 150 digits memorizes them (training accuracy 1.0); the
# gap to held-out accuracy measures the overfitting. Small rotations, shifts
# and zooms (no flips: a flipped digit is another symbol) and mixup narrow
# it. Three random splits, the same network and epochs for all; the loop
# prints the training accuracy, the held-out accuracy and the gap of each
# setting (the output below is this build's run).
X, y = load_digit_images(return_X_y=True)
geometric = dict(horizontal_flip=0, degrees=12, translate=0.1, scale=(0.9, 1.1))
settings = {
    "none": None,
    "rotate/shift/zoom": ImageAugmenter(**geometric),
    "... + mixup": ImageAugmenter(**geometric, mixup_alpha=0.2),
}
for name, augmenter in settings.items():
    scores = []
    for seed in range(3):
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, train_size=150, stratify=y, random_state=seed)
        clf = CNNClassifier(epochs=40, augment=augmenter, random_state=seed).fit(X_train, y_train)
        scores.append((clf.score(X_train, y_train), clf.score(X_test, y_test)))
    train, test = np.mean(scores, axis=0)
    print(f"{name:18s} train {train:.3f}  held-out {test:.3f}  gap {train - test:.3f}")

# %%
# Cross-validation that augments the training folds only
# -------------------------------------------------------
# As a sampler step of an imbalanced-learn pipeline, the augmented copies are
# made from each training fold and never from the fold being scored.
from imblearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from skvision import AugmentationSampler

X_flat = X[:600].reshape(600, -1)
plain = cross_val_score(LogisticRegression(max_iter=2000), X_flat, y[:600], cv=5)
sampler = AugmentationSampler(augmenter=ImageAugmenter(**geometric, n_copies=2, image_shape=(8, 8),
                                             random_state=0))
augmented = cross_val_score(make_pipeline(sampler, LogisticRegression(max_iter=2000)),
                            X_flat, y[:600], cv=5)
print(f"logistic regression on pixels: {plain.mean():.3f}; with 2 augmented copies: "
      f"{augmented.mean():.3f}")
