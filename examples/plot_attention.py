"""
Attention: CNN, CNN + self-attention and a vision transformer
=============================================================

Attention computes a score between every pair of tokens and rebuilds each
token as the score-weighted sum of all of them: a context-aware
representation. :class:`~skvision.VisionTransformerClassifier` cuts the image
into patches and uses only attention (after a small convolutional stem);
``CNNClassifier(attention=True)`` adds one self-attention block over the
positions of the CNN's last feature map, built from the same attention
module. The three are cross-validated on the digits, and the transformer's
attention rollout shows which pixels the class token attended to.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.model_selection import cross_validate

from skvision import CNNClassifier, VisionTransformerClassifier
from skvision.datasets import load_digit_images
from skvision.plotting import plot_activation_maps

X, y = load_digit_images(return_X_y=True)
models = {
    "CNN": CNNClassifier(random_state=0),
    "CNN + self-attention": CNNClassifier(attention=True, random_state=0),
    "vision transformer": VisionTransformerClassifier(epochs=12, random_state=0),
}
for name, model in models.items():
    result = cross_validate(model, X, y, cv=3, return_estimator=True, return_indices=True)
    print(f"{name:22s} accuracy {result['test_score'].mean():.3f} ± "
          f"{result['test_score'].std():.3f}, fit {result['fit_time'].mean():.1f} s")

# %%
# Attention rollout of the transformer on a few digits of its first test fold
# (it never saw them): the share of the class token's attention that reaches
# each pixel (each map sums to 1).
vit = result["estimator"][0]
shown = result["indices"]["test"][0][:12]
maps = vit.attention_maps(X[shown])
titles = [f"pred {label}" for label in vit.predict(X[shown])]
plot_activation_maps(X[shown], maps, titles, n_cols=6)
plt.show()
