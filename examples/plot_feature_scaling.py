"""
Feature scaling for images
==========================

Feature scaling puts inputs on a common scale so that no feature dominates
because of its units and gradient-based training is well conditioned. For
images the natural unit is the color channel:
:class:`~skvision.preprocessing.ChannelStandardizer` learns one mean and one
standard deviation per channel (the image form of ``StandardScaler``, which
would give every pixel its own scale). For feature vectors, such as a
pretrained network's, sklearn's own ``StandardScaler`` is the tool.
"""

# %%
# Raw-scale digits into a CNN
# ---------------------------
# sklearn's ``load_digits`` stores gray levels 0..16. A CNN trained on those
# raw values starts with inputs 16 times larger than the [0, 1] range its
# initialization assumes; standardizing the channel fixes that in the
# pipeline, fitted on the training folds only.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision import CNNClassifier, PretrainedFeatureExtractor
from skvision.datasets import load_textures
from skvision.preprocessing import ChannelStandardizer

digits = load_digits()
X_raw = digits.images[:900].astype(np.float32)  # gray levels 0..16
y = digits.target[:900]
cv = StratifiedKFold(3, shuffle=True, random_state=0)
cnn = CNNClassifier(filters=(16, 32), epochs=8, lr=0.01, random_state=0)
results = {}
for name, model in [("raw 0..16", cnn),
                    ("ChannelStandardizer", make_pipeline(ChannelStandardizer(), cnn))]:
    results[name] = cross_val_score(model, X_raw, y, cv=cv)
    print(f"CNN, {name:20s} accuracy {results[name].mean():.3f} ± {results[name].std():.3f}")

# %%
# Standardizing deep features
# ---------------------------
# EfficientNet features have very different scales from one dimension to the
# next; an L2-penalized logistic regression treats them all alike, so
# ``StandardScaler`` in front of it usually helps.
X_tex, y_tex, groups = load_textures(n_per_region=15)
extractor = PretrainedFeatureExtractor(image_size=96)
features = extractor.fit_transform(X_tex)
print(f"feature standard deviations range from {features.std(axis=0).min():.3f} "
      f"to {features.std(axis=0).max():.3f}")
for name, model in [("no scaling", LogisticRegression(max_iter=3000)),
                    ("StandardScaler", make_pipeline(StandardScaler(),
                                                     LogisticRegression(max_iter=3000)))]:
    scores = cross_val_score(model, features, y_tex, groups=groups, cv=GroupKFold(4))
    results[f"deep features, {name}"] = scores
    print(f"textures, deep features, {name:15s} accuracy {scores.mean():.3f}")

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(results), [scores.mean() for scores in results.values()],
        xerr=[scores.std() for scores in results.values()], color="tab:blue")
ax.set_xlim(0.5, 1.0)
ax.set_xlabel("cross-validated accuracy")
fig.tight_layout()
plt.show()
