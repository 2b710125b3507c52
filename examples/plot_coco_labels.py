"""
Bringing your labels: a detector trained from COCO files
========================================================

Labelled images come from annotation tools, which export COCO JSON, Pascal
VOC XML or YOLO txt folders. :func:`~skvision.datasets.load_coco` (and
:func:`~skvision.datasets.load_voc`, :func:`~skvision.datasets.load_yolo`)
read them into what the estimators take: the image paths as ``X`` and one
dict of ``boxes`` (xyxy pixels) and ``labels`` (category names) per image.
:func:`~skvision.datasets.save_coco` writes the other way: ground truth, or
a detector's predictions as a COCO results file that the annotation tools
and pycocotools open.

Here we write a small COCO data set, load it, train
:class:`~skvision.detection.FasterRCNNDetector` from the files, and write
its predictions back as a COCO results file, scored by skvision and, when
it is installed, by pycocotools.
"""

# %%
# A COCO data set on disk
# -----------------------
# 130 synthetic images of 48x48 pixels with circles, squares and triangles,
# saved as PNG files, and their boxes as a COCO annotation file: what an
# annotation tool's export looks like.
import json
import os
import tempfile

import matplotlib.pyplot as plt
from PIL import Image

from skvision.datasets import coco_categories, load_coco, make_shapes, save_coco
from skvision.detection import FasterRCNNDetector
from skvision.metrics import mean_average_precision
from skvision.plotting import plot_boxes

root = tempfile.mkdtemp()
os.makedirs(os.path.join(root, "images"))
X, boxes = make_shapes(n_samples=130, image_size=48, task="detection", max_objects=3,
                       random_state=0)
files = [os.path.join(root, "images", f"{index:04d}.png") for index in range(len(X))]
for file, image in zip(files, X):
    Image.fromarray(image).save(file)
annotations = os.path.join(root, "annotations.json")
save_coco(files, boxes, annotations)

with open(annotations) as handle:
    document = json.load(handle)
print(json.dumps({key: value[:1] for key, value in document.items()}, indent=1))

# %%
# Loading it
# ----------
# Boxes come back as xyxy pixels (COCO's ``[x, y, width, height]``
# converted), labels as the category names;
# :func:`~skvision.datasets.coco_categories` keeps
# the file's ids.
paths, targets = load_coco(annotations)
print(coco_categories(annotations))
print(targets[0])

# %%
# Training from the files
# -----------------------
# The paths are ``X``: the detector reads the images batch by batch. The
# last 30 images are held out.
detector = FasterRCNNDetector(epochs=8, random_state=0)
detector.fit(paths[:100], targets[:100])
predictions = detector.predict(paths[100:])
plot_boxes([X[index] for index in range(100, 104)], y_true=targets[100:104],
           y_pred=predictions[:4], score_threshold=0.5)
plt.show()

# %%
# Predictions as a COCO results file
# ----------------------------------
# Results name each image by its id in the annotation file: passing that
# file as ``categories`` matches each path to its image (and category names
# to their ids), so the held-out subset's results open against the whole
# annotation file.
results = os.path.join(root, "results.json")
save_coco(paths[100:], predictions, results, categories=annotations)
with open(results) as handle:
    print(json.load(handle)[:2])

# %%
# The same score from skvision and pycocotools
# --------------------------------------------
# :func:`~skvision.metrics.mean_average_precision` with
# ``iou_thresholds="coco"`` is COCO's mAP@[.5:.95]: on the two files,
# pycocotools' ``COCOeval`` gives the same number.
score = mean_average_precision(targets[100:], predictions, iou_thresholds="coco")
print(f"skvision     mAP@[.5:.95] {score:.4f}, "
      f"mAP@0.5 {mean_average_precision(targets[100:], predictions):.4f}")
try:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
except ImportError:
    print("pycocotools is not installed: pip install 'scikit-vision[coco]'")
else:
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(annotations)
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.imgIds = list(range(101, 131))  # the held-out images' ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    print(f"pycocotools  mAP@[.5:.95] {evaluation.stats[0]:.4f}, "
          f"mAP@0.5 {evaluation.stats[1]:.4f}")
