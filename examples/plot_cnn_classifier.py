"""
CNN classification with scikit-learn habits
===========================================

A convolutional neural network learns filters that respond to local patterns
(edges, strokes, corners); pooling makes the responses tolerant to small
shifts, batch normalization keeps training stable and global average pooling
turns the last feature maps into class scores. :class:`~skvision.CNNClassifier`
packs all of it into a scikit-learn estimator: here it is cross-validated
against a pixel-space logistic regression on the digits, and its class
activation maps show where in an image it found the evidence.
"""

# %%
# Cross-validation against a pixel baseline
# -----------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision import CNNClassifier
from skvision.datasets import load_digit_images, make_shapes
from skvision.plotting import plot_history, plot_images

X, y = load_digit_images(return_X_y=True)
baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
pixels = cross_val_score(baseline, X.reshape(len(X), -1), y, cv=5)
cnn = cross_val_score(CNNClassifier(random_state=0), X, y, cv=5)
print(f"pixels + logistic regression: {pixels.mean():.3f} ± {pixels.std():.3f}")
print(f"CNNClassifier:                {cnn.mean():.3f} ± {cnn.std():.3f}")

# %%
# Training curves
# ---------------
# With ``early_stopping=True`` a validation split is held out, its loss is
# recorded in ``history_`` and the best weights are restored at the end.
clf = CNNClassifier(early_stopping=True, random_state=0).fit(X, y)
plot_history(clf)

# %%
# Where the evidence lies: class activation maps
# ----------------------------------------------
# On synthetic shapes, the map of the predicted class lights up the shape.
X_shapes, y_shapes = make_shapes(600, image_size=32, random_state=0)
shapes_clf = CNNClassifier(epochs=20, batch_size=32, random_state=0)
shapes_clf.fit(X_shapes[:500], y_shapes[:500])
print(f"held-out accuracy on shapes: {shapes_clf.score(X_shapes[500:], y_shapes[500:]):.3f}")
maps = shapes_clf.class_activation_maps(X_shapes[500:506])
heat = (plt.cm.jet(maps)[..., :3] * 255).astype(np.uint8)
fig = plot_images(np.concatenate([X_shapes[500:506], heat]),
                  titles=list(shapes_clf.predict(X_shapes[500:506])) + ["CAM"] * 6, n_cols=6)
plt.show()
