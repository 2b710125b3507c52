"""Extractor throughput per backbone family against timm's own loop, same run.

For each family (random weights: the same ones on both sides, none
downloaded) ``PretrainedFeatureExtractor.transform`` and a plain timm loop
(resize, normalize, ``forward_features``, ``forward_head(pre_logits=True)``
under ``torch.inference_mode()``) run on the same 224 px batches at batch
size 32, alternating repeats; features must agree first.

Usage: python bench/backbone_throughput.py [--quick] [--device cpu|cuda]
Writes bench/results/backbone_throughput.json and prints an RST table.
"""

import argparse

import numpy as np
from _harness import best_throughput, machine, write_result
from extractor_throughput import plain_model, plain_timm

from skvision.transfer import PretrainedFeatureExtractor

FAMILIES = [
    "efficientnet_lite0",
    "resnet50",
    "convnext_tiny",
    "regnety_016",
    "vit_small_patch16_224",
    "vit_small_patch14_reg4_dinov2",
    "swin_tiny_patch4_window7_224",
]
BATCH_SIZE = 32
SIZE = 224


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 images, 1 repeat")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    n_images, repeats = (32, 1) if args.quick else (64, 4)
    images = np.random.default_rng(0).integers(0, 256, (n_images, SIZE, SIZE, 3), dtype=np.uint8)
    results = {}
    for backbone in FAMILIES:
        extractor = PretrainedFeatureExtractor(
            backbone=backbone, weights=None if backbone.startswith("efficientnet_lite") else False,
            image_size=SIZE, batch_size=BATCH_SIZE, device=args.device,
        ).fit(images[:1])
        model = plain_model(extractor)
        np.testing.assert_allclose(extractor.transform(images[:4]),
                                   plain_timm(model, images[:4], args.device, size=(SIZE, SIZE),
                                              batch_size=BATCH_SIZE),
                                   rtol=1e-3, atol=1e-4)
        timing = best_throughput(
            {"plain_timm": lambda model=model: plain_timm(
                model, images, args.device, size=(SIZE, SIZE), batch_size=BATCH_SIZE),
             "skvision": lambda extractor=extractor: extractor.transform(images)},
            n_images=n_images, repeats=repeats,
        )
        timing["ratio"] = timing["skvision"]["images_per_s"] / timing["plain_timm"]["images_per_s"]
        timing["n_features"] = int(extractor.n_features_out_)
        results[backbone] = timing
        print(f"{backbone:32s} skvision {timing['skvision']['images_per_s']:7.1f} img/s | timm "
              f"{timing['plain_timm']['images_per_s']:7.1f} img/s | ratio {timing['ratio']:.3f}",
              flush=True)
    rule = "=" * 30 + "  " + "=" * 9 + "  " + "=" * 10 + "  " + "=" * 13
    print(f"\n{rule}\nbackbone{' ' * 24}features  images/s    / timm's loop\n{rule}")
    for backbone, timing in results.items():
        print(f"{backbone:30s}  {timing['n_features']:9d}  "
              f"{timing['skvision']['images_per_s']:10.1f}  {timing['ratio']:13.2f}")
    print(rule)
    write_result("backbone_throughput", {
        "families": results,
        "machine": dict(machine(args.device), batch_size=BATCH_SIZE, n_images=n_images,
                        input=f"{SIZE}x{SIZE}x3 uint8"),
    })


if __name__ == "__main__":
    main()
