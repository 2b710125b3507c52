"""EfficientNet-Lite0, -Lite1 and -Lite2 as offline feature extractors: accuracy and speed.

Each backbone turns the same images into features at its own input size
(224, 240, 260 px) and a linear model is cross-validated on them, on two
offline tasks harder than the default texture set (where Lite0 already
scores about 1.0):

* small texture patches: 20x20 patches of the brick, grass and gravel
  photographs, 8 per photo region, GroupKFold over the regions (test
  patches from regions never seen in training), LogisticRegression;
* counting: ``make_shapes`` images with 1 to 5 shapes, the count regressed
  by RidgeCV on the features (5-fold R2).

Speed is the feature extraction throughput (images/s) on the same images,
best of the repeats; the ratio column is against Lite0 in the same run.

Usage: python bench/backbone_accuracy.py [--quick]
Writes bench/results/backbone_accuracy.json.
"""

import argparse
import time

import numpy as np
from _harness import machine, write_result
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GroupKFold, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision.datasets import load_textures, make_shapes
from skvision.transfer import PretrainedFeatureExtractor

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def features(backbone, images, repeats):
    extractor = PretrainedFeatureExtractor(backbone=backbone, device="cpu").fit(images[:1])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = extractor.transform(images)
        best = min(best, time.perf_counter() - start)
    return out, len(images) / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, one repeat")
    args = parser.parse_args()
    per_region, n_shapes, repeats = (4, 150, 1) if args.quick else (8, 400, 2)
    X_tex, y_tex, groups = load_textures(patch_size=20, n_per_region=per_region)
    X_count, boxes = make_shapes(n_shapes, image_size=48, task="detection", max_objects=6,
                                 random_state=0)
    counts = np.array([len(found["boxes"]) for found in boxes], dtype=float)
    rows = {}
    for backbone in BACKBONES:
        tex, _ = features(backbone, X_tex, 1)
        count, speed = features(backbone, X_count, repeats)
        texture_accuracy = cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)),
            tex, y_tex, groups=groups, cv=GroupKFold(4)).mean()
        count_r2 = cross_val_score(RidgeCV(alphas=np.logspace(-1, 4, 11)), count, counts,
                                   cv=KFold(5, shuffle=True, random_state=0)).mean()
        rows[backbone] = dict(texture_accuracy=float(texture_accuracy), count_r2=float(count_r2),
                              images_per_s=float(speed))
    base = rows["efficientnet_lite0"]["images_per_s"]
    print(f"{'backbone':20s} {'texture acc':>11s} {'count R2':>9s} {'img/s':>7s} {'speed':>6s}")
    for backbone, row in rows.items():
        row["speed_vs_lite0"] = row["images_per_s"] / base
        print(f"{backbone:20s} {row['texture_accuracy']:11.3f} {row['count_r2']:9.3f} "
              f"{row['images_per_s']:7.1f} {row['speed_vs_lite0']:6.2f}")
    write_result("backbone_accuracy", {"machine": machine(), "quick": args.quick,
                                       "n_texture_patches": len(X_tex),
                                       "n_count_images": len(X_count), "rows": rows})


if __name__ == "__main__":
    main()
