"""
Fine-tuning a torchvision Faster R-CNN detector
===============================================

torchvision's Faster R-CNN detectors come trained on COCO: 80 everyday
object classes in 118,000 photos. On real photos, nobody trains a detector
from nothing: one fine-tunes such a detector for one's own classes, and a
few hundred annotated images often suffice.
:class:`~skvision.detection.FasterRCNNDetector` does it with
``backbone="fasterrcnn_mobilenet_v3_large_fpn"`` (or the ``_320_``,
``resnet50`` and ``resnet50_v2`` variants): ``fit`` replaces the detector's
box predictor by one for the classes of ``y`` and trains the rest, keeping
its backbone, feature pyramid, anchors and region proposal network.

``weights=None`` (the default) downloads torchvision's COCO weights once and
caches them; ``weights="coco.pth"`` takes them from a local file. This
example runs offline, so it saves a detector with *random* weights to a file
and fine-tunes from it: it shows the mechanics, not what COCO's features
would add (good detections of real objects after a few epochs).
"""

# %%
# A whole-model weights file
# --------------------------
# The file holds the whole detector's state dict, as
# ``torch.save(model.state_dict(), path)`` writes it: here torchvision's
# random initialization; COCO's weights file has the same tensors.
import os
import tempfile

import matplotlib.pyplot as plt
import torch
import torchvision

from skvision.datasets import make_shapes
from skvision.detection import FasterRCNNDetector
from skvision.plotting import plot_boxes

name = "fasterrcnn_mobilenet_v3_large_fpn"
torch.manual_seed(0)
weights_path = os.path.join(tempfile.mkdtemp(), f"{name}.pth")
torch.save(torchvision.models.get_model(name, weights=None, weights_backbone=None).state_dict(),
           weights_path)

# %%
# Fine-tuning for new classes
# ---------------------------
# 48 generated 64x64 images with circles, squares and triangles; 16 more are
# held out. ``trainable_layers=6`` trains the whole MobileNet body (with
# COCO weights, the default 3 keeps its early layers as they are).
X, targets = make_shapes(n_samples=64, image_size=64, task="detection", max_objects=3,
                         random_state=0)
detector = FasterRCNNDetector(backbone=name, weights=weights_path, trainable_layers=6,
                              epochs=2, random_state=0)
detector.fit(X[:48], targets[:48])
print(f"held-out mAP@0.5: {detector.score(X[48:], targets[48:]):.3f}")

# %%
# What changed and what was kept: the new box predictor has one output per
# class plus the background; the region proposal network still scores
# torchvision's 15 anchors (5 sizes x 3 ratios) at every position of each
# pyramid map.
module = detector.module_
print("classes:", list(detector.classes_))
print("box predictor outputs:", module.roi_heads.box_predictor.cls_score.out_features)
print("anchors per position:", module.rpn.anchor_generator.num_anchors_per_location())

# %%
# Detections scoring at least 0.5, true boxes dashed. From random weights
# and a few epochs on a CPU this detector is still rough: the small CNN of
# :ref:`the detection example <sphx_glr_auto_examples_plot_detection.py>`
# does better on such shapes, in less time. COCO weights turn the
# comparison around on photos: their features already know objects.
plot_boxes(X[48:52], y_true=targets[48:52], y_pred=detector.predict(X[48:52]),
           score_threshold=0.5)
plt.show()
