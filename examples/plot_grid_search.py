"""
Cross-validated grid search over a whole image pipeline
=======================================================

Cross-validation estimates how a model does on data it has not seen by
training and scoring it on several train/test splits; a grid search runs it
for every combination of hyper-parameters and keeps the best. Because every
skvision step is a scikit-learn estimator, the search can span the whole
pipeline: which features (flattened pixels or pretrained EfficientNet
features), whether to scale, how many features to keep, and the model's
regularization — each combination fitted on the training folds only.

On 600 digits and 3 shuffled folds (the output below is this build's run),
flattened pixels beat the EfficientNet features here: 8x8 digits upsampled
to 64x64 look nothing like ImageNet photos, and a search over the feature
step is how one finds that out instead of assuming it.
"""

# %%
import warnings

import pandas as pd
from sklearn.feature_selection import SelectKBest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skvision import PretrainedFeatureExtractor
from skvision.datasets import load_digit_images
from skvision.preprocessing import ImageFlattener

# The blank border pixels of the digits are constant: SelectKBest warns about them.
warnings.filterwarnings("ignore", module="sklearn.feature_selection")

X, y = load_digit_images(return_X_y=True)
X, y = X[:600], y[:600]
pipeline = Pipeline([
    ("features", ImageFlattener()),
    ("scale", StandardScaler()),
    ("select", SelectKBest()),
    ("model", LogisticRegression(max_iter=3000)),
])
grid = [
    {"features": [ImageFlattener()], "select__k": [32, "all"], "model__C": [0.1, 1.0]},
    {"features": [PretrainedFeatureExtractor(image_size=64)], "scale": ["passthrough",
     StandardScaler()], "select__k": [200, "all"], "model__C": [0.1, 1.0]},
]
search = GridSearchCV(pipeline, grid, cv=StratifiedKFold(3, shuffle=True, random_state=0))
search.fit(X, y)

# %%
# The results table, best first.
results = pd.DataFrame(search.cv_results_)
results["features"] = results["param_features"].map(lambda step: type(step).__name__)
results["scale"] = results["param_scale"].map(
    lambda step: "none" if step == "passthrough" else "StandardScaler")
columns = ["features", "scale", "param_select__k", "param_model__C", "mean_test_score",
           "std_test_score", "mean_fit_time"]
table = results.sort_values("rank_test_score")[columns]
print(table.to_string(index=False, float_format="{:.3f}".format))
print(f"\nbest: {search.best_params_} -> {search.best_score_:.3f}")

# %%
# Every candidate's cross-validated accuracy, with the spread over the folds.
import matplotlib.pyplot as plt

labels = [f"{row.features.replace('PretrainedFeatureExtractor', 'EfficientNet features')}"
          f", {row.scale}, k={row.param_select__k}, C={row.param_model__C}"
          for row in table.itertuples()]
fig, ax = plt.subplots(figsize=(8, 0.35 * len(table) + 1))
ax.barh(range(len(table)), table["mean_test_score"], xerr=table["std_test_score"],
        color=["tab:blue" if "Flattener" in label else "tab:orange" for label in labels])
ax.set_yticks(range(len(table)), labels, fontsize=8)
ax.invert_yaxis()
ax.set_xlim(0.8, 1.0)
ax.set_xlabel("mean accuracy over 3 folds (± std)")
ax.set_title("Grid search over the whole pipeline, best first")
fig.tight_layout()
plt.show()
