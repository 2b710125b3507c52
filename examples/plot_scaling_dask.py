"""
Scaling out with dask
=====================

The same scikit-learn code runs on a laptop and on a cluster: joblib's dask
backend hands every fit of a grid search or cross-validation to a dask
worker, :func:`skvision.parallel.apply_blocks` predicts (or extracts
features) block by block over a dask array of images too large for memory,
and the boosted-trees estimators train with ``xgboost.dask`` when given dask
data. Here the "cluster" is a ``LocalCluster`` of two workers in this
process (so the example also runs as a plain script); on a real cluster,
replace it with ``Client("tcp://scheduler:8786")`` and nothing else changes.
Needs ``pip install "scikit-vision[distributed]"``.
"""

# %%
# Start the cluster
# -----------------
# For worker *processes* (``LocalCluster()``'s default, or ``dask worker``
# on other machines), start them inside ``dask.config.set(worker_config())``:
# it keeps dask from setting ``MALLOC_TRIM_THRESHOLD_`` in the workers,
# which makes torch several times slower. The dashboard (printed) shows every task
# live.
import time

import dask
import dask.array as da
import joblib
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skvision import BoostedTreesClassifier, CNNClassifier, PretrainedFeatureExtractor
from skvision.datasets import load_digit_images
from skvision.parallel import apply_blocks, worker_config
from skvision.preprocessing import ImageFlattener

with dask.config.set(worker_config()):
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                           dashboard_address=":0")
client = Client(cluster)
print("dashboard:", client.dashboard_link)

# %%
# Grid search: unchanged code, fits on the workers
# ------------------------------------------------
# Inside ``joblib.parallel_backend("dask")`` every candidate and fold is a
# task. Each worker trains with one torch thread, so two workers on two
# cores do not fight over them.
X, y = load_digit_images(return_X_y=True)
search = GridSearchCV(CNNClassifier(epochs=5, random_state=0),
                      {"dropout": [0.0, 0.3]}, cv=3)
with joblib.parallel_backend("dask"):
    search.fit(X, y)
print(f"best {search.best_params_}, CV accuracy {search.best_score_:.3f}")

# %%
# Block-wise feature extraction over a dask array
# -----------------------------------------------
# ``da.from_array`` stands in for images on disk (``np.load(path,
# mmap_mode="r")`` or a zarr store work the same way). Nothing runs until
# ``compute``; then each block of 500 images is one task, and the fitted
# extractor is sent to each worker once.
images = da.from_array(np.concatenate([X, X[:, :, ::-1]]), chunks=(500, 8, 8))
extractor = PretrainedFeatureExtractor(image_size=(64, 64)).fit(X[:2])
start = time.perf_counter()
features = apply_blocks(extractor, images, "transform").compute()
cluster_rate = len(features) / (time.perf_counter() - start)
start = time.perf_counter()
extractor.transform(X[:1000])
local_rate = 1000 / (time.perf_counter() - start)
print(f"features {features.shape}: {cluster_rate:.0f} images/s on the cluster, "
      f"{local_rate:.0f} images/s in this process")

# %%
# The features then train any sklearn model; a fitted pipeline predicts
# block by block the same way.
model = make_pipeline(ImageFlattener(), LogisticRegression(max_iter=1000)).fit(X, y)
lazy_predictions = apply_blocks(model, images)
print("predictions:", lazy_predictions.compute()[:10])

# %%
# Boosted trees on dask data
# --------------------------
# Given dask collections, ``BoostedTreesClassifier`` trains with
# ``xgboost.dask`` on the workers (labels encoded and early stopping as in
# memory), and predicts lazily.
pixels = da.from_array(X.reshape(len(X), -1), chunks=(600, 64))
labels = da.from_array(np.array(["zero", "one", "two", "three", "four", "five", "six",
                                 "seven", "eight", "nine"])[y], chunks=600)
boosted = BoostedTreesClassifier(n_estimators=100, random_state=0).fit(pixels, labels)
print("training accuracy:", (boosted.predict(pixels).compute() == labels.compute()).mean())

# %%
# Throughput of the two ways to extract features (the cluster's includes
# sending the model and gathering the results).
fig, ax = plt.subplots(figsize=(5, 2.5))
ax.barh(["transform", "apply_blocks,\n2 workers"],
        [local_rate, cluster_rate], color=["tab:gray", "tab:blue"])
ax.set_xlabel("EfficientNet-Lite0 features, images/s")
fig.tight_layout()
plt.show()

client.shutdown()
