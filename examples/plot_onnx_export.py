"""
Exporting a pipeline to ONNX
============================

:func:`skvision.to_onnx` turns a fitted skvision estimator, or a pipeline
that starts with one, into a single ONNX graph that goes from the raw images
to the predictions: the uint8 scaling, the channels-last to channels-first
transpose, the backbone's resize and normalization, the network and the
scikit-learn steps after it are all inside. Any ONNX runtime can then serve
the model without Python, torch or skvision.

Here a pretrained EfficientNet-Lite0 feature extractor, a
:class:`~sklearn.preprocessing.StandardScaler` and a
:class:`~sklearn.linear_model.LogisticRegression` are trained on texture
patches, exported as one model, and onnxruntime's probabilities are compared
with the pipeline's own ``predict_proba``.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision import PretrainedFeatureExtractor, to_onnx
from skvision.datasets import load_textures

X, y, _ = load_textures()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
pipeline = make_pipeline(
    # Float32 arithmetic, as the exported graph computes (see the user guide).
    PretrainedFeatureExtractor(image_size=64, precision="32"),
    StandardScaler(),
    LogisticRegression(max_iter=2000),
).fit(X_train, y_train)
print(f"images {X.shape} {X.dtype}, test accuracy {pipeline.score(X_test, y_test):.3f}")

# %%
# One model, one input: the images as they are given to ``predict``, with a
# dynamic batch axis. The outputs are named as skl2onnx names them.
model = to_onnx(pipeline, X_test[:5])
print("input: ", [(value.name, value.type.tensor_type.elem_type) for value in model.graph.input])
print("outputs:", [value.name for value in model.graph.output])

# %%
# onnxruntime runs it on any number of images; its labels are the classes
# (strings here) and its probabilities match ``predict_proba``.
session = onnxruntime.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
labels, probabilities = session.run(None, {"X": X_test})
expected = pipeline.predict_proba(X_test)
print(f"largest difference in probability: {np.abs(probabilities - expected).max():.2e}")
print(f"same labels: {np.array_equal(labels, pipeline.predict(X_test))}")

# %%
# Saved to a file, the model is what a serving runtime loads.
#
# .. code-block:: python
#
#    with open("textures.onnx", "wb") as file:
#        file.write(model.SerializeToString())
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(expected.ravel(), probabilities.ravel(), s=8)
ax.plot([0, 1], [0, 1], color="gray", linewidth=0.8)
ax.set(xlabel="pipeline.predict_proba", ylabel="onnxruntime", title="Probabilities")
plt.show()
