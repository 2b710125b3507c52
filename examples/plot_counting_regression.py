"""
Regression on images: counting shapes
=====================================

Not every image task is a classification. Counting objects, estimating an
age, a size or a quality score are regressions, and transfer learning is
what makes them work on small sets. Here each synthetic image holds one to
five shapes and the target is how many.

:class:`~skvision.transfer.FineTunedRegressor` puts a linear output on a
pretrained EfficientNet-Lite0 (only the head is trained, ``freeze="all"``);
:class:`~skvision.attention.VisionTransformerRegressor` learns from scratch,
with attention between all patches. Both train on the squared error of
standardized targets. A ridge regression on the raw pixels is the baseline:
a count does not live in any single pixel, so a linear model on pixels
cannot find it. ``TransformedTargetRegressor`` shows that the estimators
compose with scikit-learn's meta-estimators like any regressor.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skvision.attention import VisionTransformerRegressor
from skvision.datasets import make_shapes
from skvision.plotting import plot_images
from skvision.transfer import FineTunedRegressor

X, boxes = make_shapes(600, image_size=48, task="detection", max_objects=6, random_state=0)
counts = np.array([len(found["boxes"]) for found in boxes], dtype=float)
X_train, X_test, y_train, y_test = X[:400], X[400:], counts[:400], counts[400:]
print("images per count (1 to 5):", np.bincount(counts.astype(int))[1:])
plot_images(X[:8], titles=[f"{count:.0f} shapes" for count in counts[:8]])

# %%
# Three models on the same split
# ------------------------------
flatten = FunctionTransformer(lambda images: images.reshape(len(images), -1) / 255.0)
models = {
    "ridge on pixels": make_pipeline(flatten, RidgeCV(alphas=np.logspace(-2, 4, 13))),
    "FineTunedRegressor": FineTunedRegressor(image_size=96, epochs=20, lr=0.003,
                                             random_state=0),
    # The count is learned on a log scale and mapped back.
    "VisionTransformerRegressor": TransformedTargetRegressor(
        regressor=VisionTransformerRegressor(epochs=30, random_state=0),
        func=np.log, inverse_func=np.exp),
}
predictions = {}
for name, model in models.items():
    predictions[name] = model.fit(X_train, y_train).predict(X_test)
    print(f"{name}: held-out R2 {r2_score(y_test, predictions[name]):.3f}")

# %%
# Predicted against true counts
# -----------------------------
# Jitter spreads the integer counts so that the points do not hide each other.
jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(y_test))
fig, axes = plt.subplots(1, len(models), figsize=(12, 4), sharey=True)
for ax, (name, predicted) in zip(axes, predictions.items()):
    ax.scatter(y_test + jitter, predicted, s=8, alpha=0.6)
    ax.plot([1, 5], [1, 5], color="black", linewidth=1)
    ax.set(title=f"{name}\nR2 = {r2_score(y_test, predicted):.2f}", xlabel="true count")
axes[0].set_ylabel("predicted count")
fig.tight_layout()
plt.show()
