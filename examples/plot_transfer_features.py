"""
Transfer learning: pretrained features for any scikit-learn model
=================================================================

A network trained on ImageNet has learned features (edges, textures, object
parts) that describe new images well. :class:`~skvision.transfer.PretrainedFeatureExtractor`
removes its classification layers and turns each image into a feature vector,
so a plain :class:`~sklearn.linear_model.LogisticRegression` can learn a new
task from a few hundred images. Here: recognising brick, grass and gravel in
patches of scikit-image's texture photos, cross-validated on photo regions
never seen in training, against the same model on raw pixels.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision.datasets import load_textures
from skvision.plotting import plot_images
from skvision.preprocessing import ImageFlattener
from skvision.transfer import PretrainedFeatureExtractor

X, y, groups = load_textures()
cv = GroupKFold(4)
pixels = make_pipeline(ImageFlattener(), StandardScaler(), LogisticRegression(max_iter=2000))
features = make_pipeline(
    PretrainedFeatureExtractor(image_size=112),  # EfficientNet-Lite0, ImageNet weights
    StandardScaler(),
    LogisticRegression(max_iter=2000),
)
for name, model in [("raw pixels", pixels), ("pretrained features", features)]:
    scores = cross_val_score(model, X, y, groups=groups, cv=cv)
    print(f"{name:20s} accuracy {scores.mean():.3f} ± {scores.std():.3f}")

# %%
# Out-of-region predictions of both models on a few patches.
pixel_pred = cross_val_predict(pixels, X, y, groups=groups, cv=cv)
feature_pred = cross_val_predict(features, X, y, groups=groups, cv=cv)
shown = list(range(0, len(X), 20))
titles = [f"{y[i]}\npixels: {pixel_pred[i]}\nfeatures: {feature_pred[i]}" for i in shown]
plot_images(X[shown], titles, n_cols=6, ax_size=2.0)
plt.show()
