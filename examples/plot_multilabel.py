"""
Multi-label images: several tags per image
==========================================

A photo often carries several tags at once: "road", "cloud" and "water" in
one scene. scikit-learn's convention for this is a multilabel-indicator
``y`` of shape ``(n_samples, n_labels)``, one column of 0 and 1 per tag.
skvision's neural classifiers take it as
:class:`~sklearn.neural_network.MLPClassifier` does: one sigmoid output per
tag, trained with binary cross-entropy; ``predict`` returns the indicator
matrix and ``predict_proba`` each tag's probability.

Here each synthetic image holds one to three shapes and its tags say which
of circle, square and triangle it contains. Three models compete, scored by
the samples-averaged F1 (per image, how well its predicted tags match its
true ones):

* a logistic regression per tag on the raw pixels
  (:class:`~sklearn.multioutput.MultiOutputClassifier`);
* the same on frozen pretrained features
  (:class:`~skvision.transfer.PretrainedFeatureExtractor`);
* :class:`~skvision.CNNClassifier` trained on the tags directly.
"""

# %%
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision import CNNClassifier
from skvision.datasets import make_shapes
from skvision.plotting import plot_images
from skvision.preprocessing import ImageFlattener
from skvision.transfer import PretrainedFeatureExtractor

TAGS = ("circle", "square", "triangle")  # the columns of y, in make_shapes' order
X, y = make_shapes(600, image_size=32, task="multilabel", random_state=0)
X_train, X_test, y_train, y_test = X[:450], X[450:], y[:450], y[450:]
print("images with each tag:", dict(zip(TAGS, y.sum(axis=0).tolist())))
plot_images(X[:8], titles=[", ".join(name for name, on in zip(TAGS, tags) if on)
                           for tags in y[:8]])

# %%
# Three models on the same split
# ------------------------------
per_tag = MultiOutputClassifier(LogisticRegression(max_iter=2000))
models = {
    "pixels + logistic regression per tag": make_pipeline(ImageFlattener(), StandardScaler(),
                                                          per_tag),
    "pretrained features + logistic regression per tag": make_pipeline(
        PretrainedFeatureExtractor(image_size=64), StandardScaler(), per_tag),
    # 30 epochs: "auto" gives 10 on 450 images, too few for every tag.
    "CNNClassifier on the tags": CNNClassifier(epochs=30, random_state=0),
}
for name, model in models.items():
    start = time.perf_counter()
    predicted = model.fit(X_train, y_train).predict(X_test)
    seconds = time.perf_counter() - start
    print(f"{name}: samples-F1 {f1_score(y_test, predicted, average='samples'):.3f}, "
          f"subset accuracy {np.mean(np.all(predicted == y_test, axis=1)):.3f} "
          f"({seconds:.1f} s)")

# %%
# Each tag's probability
# ----------------------
# ``predict_proba`` gives one probability per tag; they need not sum to 1
# (an image can have all three shapes). ``predict`` keeps the tags above 1/2.
cnn = models["CNNClassifier on the tags"]
proba = cnn.predict_proba(X_test[:6])
plot_images(X_test[:6], titles=[
    "\n".join(f"{name} {p:.2f}" for name, p in zip(TAGS, row)) for row in proba])
