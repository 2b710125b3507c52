"""
Tuning a CNN by epoch halving: the survivors keep training
==========================================================

Successive halving trains every candidate for a few epochs, keeps the best
ones and trains them longer. scikit-learn's ``HalvingGridSearchCV`` with
``resource="epochs"`` retrains each survivor from scratch at every rung;
:class:`~skvision.model_selection.EpochHalvingGridSearchCV` plans each
candidate's fit (and its one-cycle learning-rate schedule) for
``max_epochs`` from the start and lets the survivors continue where the
previous rung stopped them. The last rung's fits are plain ``max_epochs``
fits, and no epoch is trained twice.

Here: 8 candidates (4 learning rates x 2 widths) of a small CNN on 600
digits, 3 folds, rungs of 1, 2 and 4 epochs (``factor=2``).
"""

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

from skvision import CNNClassifier
from skvision.datasets import load_digit_images
from skvision.model_selection import EpochHalvingGridSearchCV

torch.set_num_threads(1)  # small networks: one thread is the fastest on a shared CPU
X, y = load_digit_images(return_X_y=True)
X_train, y_train, X_test, y_test = X[:600], y[:600], X[600:1100], y[600:1100]

search = EpochHalvingGridSearchCV(
    CNNClassifier(batch_size=32, random_state=0),
    {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "filters": [(8,), (8, 16)]},
    factor=2, min_epochs=1, max_epochs=4, cv=3,
).fit(X_train, y_train)

print("epochs of each rung:", search.n_resources_)
print("candidates of each rung:", search.n_candidates_)
print("best:", search.best_params_, f"cross-validated accuracy {search.best_score_:.3f}")
print(f"held-out accuracy of the refitted best: {search.score(X_test, y_test):.3f}")

# %%
# Every candidate's cross-validated accuracy at each rung it reached: the
# losers drop out after one or two epochs, the survivors' lines go on (the
# same fits, continued) up to ``max_epochs``.
results = pd.DataFrame(search.cv_results_)
results["candidate"] = [f"lr={params['lr']:g}, filters={params['filters']}"
                        for params in results["params"]]
fig, ax = plt.subplots(figsize=(7, 4))
for name, rows in results.groupby("candidate", sort=False):
    ax.plot(rows["n_resources"], rows["mean_test_score"], marker="o", label=name)
ax.set_xticks(search.n_resources_)
ax.set_xlabel("epochs trained (of a 4-epoch schedule)")
ax.set_ylabel("mean accuracy over 3 folds")
ax.set_title("Epoch halving: 8 candidates, rungs of 1, 2 and 4 epochs")
ax.legend(fontsize=7, loc="lower right")
fig.tight_layout()
plt.show()
