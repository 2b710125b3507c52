"""
Real photographs: three routes from a folder of files to a score
================================================================

The other examples train on digits, synthetic shapes and texture patches.
This one uses real photographs: the subset of *Labeled Faces in the Wild*
(LFW) that ships inside scikit-image, 100 faces and 100 non-faces (patches
of the backgrounds of the same news photos), 25x25 pixels in grayscale.
We found no package on the package registry that ships a larger
collection of real photos (several classes, hundreds of pictures) inside
its wheel, so this is the most realistic data that installs offline; with
your own photos, only the folder changes.

We write the photos as JPEG files into a folder per class, as a real data
set arrives, list them with :func:`~skvision.datasets.load_image_folder`,
look at them with :func:`~skvision.plotting.plot_images`, then compare the
three routes of :doc:`/user_guide/choosing` by 3-fold cross-validation, each
with its wall time:

(a) pretrained features and a logistic regression
    (:class:`~skvision.PretrainedFeatureExtractor`);
(b) fine-tuning the head of a pretrained network
    (:class:`~skvision.FineTunedClassifier`);
(c) a CNN trained from scratch (:class:`~skvision.CNNClassifier`).

The settings are small (64-pixel inputs for the pretrained network, 3
epochs of fine-tuning, a two-stage CNN) so that the example runs in a few
minutes on two CPU cores. ``bench/real_photos.py`` measures the same
three routes on the same data and settings and writes
``bench/results/real_photos.json``, where the figures quoted in the docs
come from.
"""

# %%
import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from skimage import data
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skvision import CNNClassifier, FineTunedClassifier, PretrainedFeatureExtractor
from skvision.datasets import load_image_folder
from skvision.plotting import plot_images
from skvision.preprocessing import ImageReader

root = tempfile.mkdtemp()
photos = (data.lfw_subset() * 255).round().astype(np.uint8)  # (200, 25, 25), faces first
for index, photo in enumerate(photos):
    label = "face" if index < 100 else "not_face"
    os.makedirs(os.path.join(root, label), exist_ok=True)
    Image.fromarray(photo).save(os.path.join(root, label, f"{index:03d}.jpg"), quality=95)

paths, labels = load_image_folder(root)
print(len(paths), "files in", sorted(set(labels)), "e.g.", os.path.relpath(paths[0], root))

# %%
# First look
# ----------
# :class:`~skvision.preprocessing.ImageReader` decodes files with the same
# reader the estimators use. The faces are cropped around the face; the
# non-faces are patches of the backgrounds of the same photos.
shown = np.r_[0:8, 100:108]
images = ImageReader(mode="L").fit_transform(paths[shown])
plot_images(images, titles=list(labels[shown]), n_cols=8)
plt.show()

# %%
# Three routes, cross-validated on the files
# ------------------------------------------
# Every estimator takes the file paths, so cross-validation sends paths, not
# pixels, to each fold. The pretrained network (EfficientNet-Lite0, with
# ImageNet weights that ship with skvision's dependencies) sees the photos
# at 64 pixels; grayscale is repeated to RGB. The CNN from scratch sees
# them at their own 25 pixels. On 133 training images per fold it needs a
# small network and many small steps: two stages of 16 and 32 filters and
# batches of 16 (the default three stages in batches of 64 take only 30
# gradient steps here and stay near chance, as ``bench/real_photos.py``
# measures).
routes = {
    "(a) pretrained features + logistic regression": make_pipeline(
        PretrainedFeatureExtractor(image_size=64), LogisticRegression(max_iter=2000)),
    "(b) fine-tuned head": FineTunedClassifier(image_size=64, epochs=3, random_state=0),
    "(c) CNN from scratch": CNNClassifier(filters=(16, 32), batch_size=16, random_state=0),
}
results = {}
for name, model in routes.items():
    start = time.perf_counter()
    scores = cross_val_score(model, paths, labels, cv=3)
    seconds = time.perf_counter() - start
    results[name] = scores.mean(), seconds
    print(f"{name:46s} accuracy {scores.mean():.3f} ± {scores.std():.3f}  "
          f"({seconds:.1f} s for 3 folds)")

# %%
# Accuracy against time
# ---------------------
# On a couple of hundred labelled images, pretrained features are the
# first thing to try: the network is not trained at all, only a linear
# model on top, so they take the least time and need no tuning. Fine-tuning
# passes the images through the network at every epoch; a network from
# scratch learns every weight from the 133 training images of each fold and
# learns at all only when made small. :doc:`/user_guide/choosing` sets these
# figures against the benchmarks on more data.
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, (accuracy, seconds) in results.items():
    ax.scatter(seconds, accuracy, s=60)
    ax.annotate(name[:3], (seconds, accuracy), textcoords="offset points", xytext=(6, 4))
ax.set_xlabel("wall time of 3-fold cross-validation (s)")
ax.set_ylabel("mean accuracy")
ax.set_title("LFW faces vs non-faces, 200 JPEG files")
fig.tight_layout()
plt.show()
