"""ImageAugmenter against a per-image torchvision v2 loop and kornia.augmentation.

The same work for all three, on float RGB batches already on the device:
random resized crop (scale 0.08-1, back to the input size), horizontal flip,
rotation up to 15 degrees and color jitter (brightness, contrast, saturation
0.4), with fresh parameters for every image:

* torchvision v2 draws one parameter set per call, even on a batch tensor,
  so per-image parameters mean calling the transform once per image (the
  loop a ``Dataset.__getitem__`` runs);
* kornia.augmentation draws per-image parameters on the batch;
* ImageAugmenter composes crop, flip and rotation into one matrix per image,
  resamples the batch once and applies the color steps as one 3x3 map.

Sizes: 32x32 (batch 512), 64x64 (batch 256), 224x224 (batch 64).

Usage: python bench/augment_throughput.py [--quick] [--device cpu|cuda]
Writes bench/results/augment_throughput[_cuda].json.
"""

import argparse

import numpy as np
import torch
from _harness import best_throughput, machine, write_result
from torchvision.transforms import v2

from skvision.augmentation import ImageAugmenter

SIZES = ((32, 512), (64, 256), (224, 64))
CROP_SCALE, DEGREES, JITTER = (0.08, 1.0), 15.0, 0.4


def torchvision_per_image(size):
    transform = v2.Compose([
        v2.RandomResizedCrop((size, size), scale=CROP_SCALE),
        v2.RandomHorizontalFlip(),
        v2.RandomRotation(DEGREES),
        v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER),
    ])
    return lambda batch: torch.stack([transform(image) for image in batch])


def kornia_batched(size):
    import kornia.augmentation as K

    transform = K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=CROP_SCALE),
        K.RandomHorizontalFlip(),
        K.RandomRotation(DEGREES),
        K.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER, p=1.0),
    )
    return transform


def skvision_batched():
    augmenter = ImageAugmenter(horizontal_flip=0.5, crop_scale=CROP_SCALE, degrees=DEGREES,
                               brightness=JITTER, contrast=JITTER, saturation=JITTER)
    rng = np.random.default_rng(0)
    return lambda batch: augmenter.augment_batch(batch, random_state=rng)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    torch.manual_seed(0)
    result = {"machine": machine(args.device), "repeats": repeats, "sizes": {}}
    for size, batch_size in SIZES:
        batch = torch.rand(batch_size, 3, size, size, device=args.device)
        candidates = {
            "skvision": skvision_batched(),
            "torchvision_v2_per_image": torchvision_per_image(size),
        }
        try:
            candidates["kornia"] = kornia_batched(size)
        except ImportError:
            print('kornia is not installed (pip install "scikit-vision[bench]"); skipped')
        if args.device.startswith("cuda"):
            candidates = {name: _synchronized(run) for name, run in candidates.items()}
        timings = best_throughput(
            {name: (lambda run=run, batch=batch: run(batch)) for name, run in candidates.items()},
            batch_size, repeats,
        )
        baseline = timings["torchvision_v2_per_image"]["images_per_s"]
        entry = {"batch_size": batch_size, "timings": timings,
                 "ratio_vs_torchvision": timings["skvision"]["images_per_s"] / baseline}
        if "kornia" in timings:
            entry["ratio_vs_kornia"] = (
                timings["skvision"]["images_per_s"] / timings["kornia"]["images_per_s"])
        result["sizes"][f"{size}x{size}"] = entry
        rates = ", ".join(f"{name} {t['images_per_s']:,.0f}/s" for name, t in timings.items())
        print(f"{size}x{size} (batch {batch_size}): {rates}; skvision / torchvision = "
              f"{entry['ratio_vs_torchvision']:.2f}x"
              + (f", skvision / kornia = {entry['ratio_vs_kornia']:.2f}x"
                 if "ratio_vs_kornia" in entry else ""))
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    write_result(f"augment_throughput{suffix}", result)


def _synchronized(run):
    def timed(batch):
        out = run(batch)
        torch.cuda.synchronize()
        return out
    return timed


if __name__ == "__main__":
    main()
