"""
Image files and data larger than memory
=======================================

Real image data is a folder of JPEG or PNG files, often larger than the
machine's memory. In skvision file paths are data, as strings are for
scikit-learn's text vectorizers: every neural estimator and the feature
extractor take a list (or array, Series, one-column DataFrame) of paths and
decode the files batch by batch, on several threads, while the previous
batch computes. Cross-validation and grid search then send paths to their
workers, not pixels.

Here we write a folder of JPEG files from scikit-image's photographs (crops
of three photos, one class per photo), list it with
:func:`~skvision.datasets.load_image_folder`, and train from the paths.
"""

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from skimage import data
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline

from skvision import FineTunedClassifier, PretrainedFeatureExtractor
from skvision.datasets import load_image_folder
from skvision.plotting import plot_images
from skvision.preprocessing import ImageReader

root = tempfile.mkdtemp()
photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "cat": data.chelsea()}
rng = np.random.default_rng(0)
for name, photo in photos.items():
    os.makedirs(os.path.join(root, name))
    for index in range(60):
        size = rng.integers(96, 200)  # files of different sizes
        top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        crop = photo[top : top + size, left : left + size]
        Image.fromarray(crop).save(os.path.join(root, name, f"{index:03d}.jpg"), quality=90)

paths, labels = load_image_folder(root)
print(len(paths), "files, e.g.", os.path.relpath(paths[0], root))

# %%
# Pretrained features from paths
# ------------------------------
# The extractor decodes each file at the size it works at (here 96 px), so
# files of any size go straight into a scikit-learn pipeline.
features = make_pipeline(PretrainedFeatureExtractor(image_size=96),
                         LogisticRegression(max_iter=2000))
scores = cross_val_score(features, paths, labels, cv=3)
print(f"pretrained features: accuracy {scores.mean():.3f} ± {scores.std():.3f}")

# %%
# A network trained from paths
# ----------------------------
# Every neural estimator takes the paths too. ``image_size`` gives every
# file one size; the decoded images stay uint8 until each batch is converted
# on the training device, and ``on_error="skip"`` would leave out unreadable
# files with one warning. With 126 training images, fine-tuning a pretrained
# network beats one trained from scratch.
train_paths, test_paths, train_labels, test_labels = train_test_split(
    paths, labels, test_size=0.3, stratify=labels, random_state=0)
model = FineTunedClassifier(image_size=96, epochs=5, random_state=0)
model.fit(train_paths, train_labels)
print(f"fine-tuned from files: held-out accuracy {model.score(test_paths, test_labels):.3f}")

# %%
# Held-out files at the network's size, with its prediction (and the truth).
# :class:`~skvision.preprocessing.ImageReader` reads a few files into an
# array with the same decoder.
shown = test_paths[:12]
images = ImageReader(image_size=96).fit_transform(shown)
plot_images(images, titles=[f"{p} ({t})" for p, t in zip(model.predict(shown), test_labels[:12])],
            n_cols=6)
plt.show()
