"""
Gradient boosting: sklearn's HistGradientBoosting and XGBoost
=============================================================

Gradient boosting builds an ensemble of small decision trees one at a time,
each fitted to the gradient of the loss of the ensemble so far, so every
tree corrects the errors left by the previous ones; the learning rate
shrinks each tree's contribution. scikit-learn's
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` and XGBoost (as
:class:`~skvision.boosting.BoostedTreesClassifier`, which adds sklearn
manners: any labels, early stopping from the training data) both grow the
trees from feature histograms. Here both learn the digits from pixels and
from PCA components of the pixels, with early stopping on a 10 % validation
split, and their validation loss per boosting round is plotted.

The output below gives both models' 5-fold scores and times on pixels and
on 30 PCA components. Trees split one feature at a time, so they gain
nothing from the rotation PCA applies; on images both stay behind a CNN
(see :doc:`/user_guide/cnn` for its score on the same digits).
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skvision.boosting import BoostedTreesClassifier
from skvision.datasets import load_digit_images
from skvision.preprocessing import ImageFlattener

X, y = load_digit_images(return_X_y=True)
labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                   "nine"])[y]  # any labels work
common = dict(learning_rate=0.1, early_stopping=True, validation_fraction=0.1,
              n_iter_no_change=10, random_state=0)
models = {
    "HistGradientBoosting": HistGradientBoostingClassifier(max_iter=500, **common),
    "BoostedTrees (XGBoost)": BoostedTreesClassifier(n_estimators=500, max_depth=4, **common),
}
cv = StratifiedKFold(5, shuffle=True, random_state=0)
for features_name, features in [("pixels", ImageFlattener()),
                                ("PCA(30)", make_pipeline(ImageFlattener(), PCA(30)))]:
    for name, model in models.items():
        start = time.perf_counter()
        scores = cross_val_score(make_pipeline(features, model), X, labels, cv=cv)
        print(f"{features_name:8s} {name:24s} accuracy {scores.mean():.3f} ± {scores.std():.3f}"
              f"  ({time.perf_counter() - start:.1f} s)")

# %%
# Learning curves: validation loss per boosting round
# ---------------------------------------------------
# Both stop when the loss has not improved for 10 rounds; ``n_iter_`` is the
# number of rounds kept.
X_flat = ImageFlattener().fit_transform(X)
hgb = models["HistGradientBoosting"].fit(X_flat, labels)
xgb = models["BoostedTrees (XGBoost)"].fit(X_flat, labels)
fig, ax = plt.subplots(figsize=(6, 3.5))
# HistGradientBoosting records the negative loss as its validation score.
ax.plot(-hgb.validation_score_[1:], label=f"HistGradientBoosting (n_iter_={hgb.n_iter_})")
ax.plot(xgb.validation_loss_, label=f"BoostedTrees (n_iter_={xgb.n_iter_})")
ax.set_xlabel("boosting round")
ax.set_ylabel("validation log-loss")
ax.set_yscale("log")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
