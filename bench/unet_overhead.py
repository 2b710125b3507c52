"""Training throughput of UNetSegmenter.fit against a plain PyTorch loop.

Both train the same U-Net (skvision.nn.UNet, depth 3, 16 base filters) on
the same 64x64 ``make_shapes`` segmentation images with AdamW, a one-cycle
schedule, per-pixel cross-entropy, batch size 8 and the same epochs and
threads, in one run with alternating repeats. The plain loop is the fast
hand-written one (tensor slicing, channels-last layout as skvision uses);
skvision adds input and mask validation, label encoding, the skorch net and
its callbacks (pixel accuracy, learning-rate record).

Usage: python bench/unet_overhead.py [--quick]
Writes bench/results/unet_overhead.json.
"""

import argparse

import torch
from _harness import best_throughput, machine, plain_training_loop, write_result

from skvision.datasets import make_shapes
from skvision.nn import UNet
from skvision.segmentation import UNetSegmenter

LR, BATCH_SIZE, DEPTH, BASE_FILTERS = 0.01, 8, 3, 16


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    args = parser.parse_args()
    n_samples, epochs, repeats = (64, 1, 2) if args.quick else (240, 2, 3)
    X, masks = make_shapes(n_samples=n_samples, image_size=64, task="segmentation",
                           random_state=0)
    images = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    targets = torch.from_numpy(masks)

    def plain():
        torch.manual_seed(0)
        model = UNet(3, 4, depth=DEPTH, base_filters=BASE_FILTERS)
        plain_training_loop(model, images, targets, batch_size=BATCH_SIZE, epochs=epochs,
                            lr=LR, label_smoothing=0.0)

    def skvision():
        UNetSegmenter(depth=DEPTH, base_filters=BASE_FILTERS, loss="ce", lr=LR,
                      batch_size=BATCH_SIZE, epochs=epochs, device="cpu",
                      random_state=0).fit(X, masks)

    timings = best_throughput({"plain_torch": plain, "skvision": skvision},
                              n_images=n_samples * epochs, repeats=repeats)
    ratio = timings["skvision"]["images_per_s"] / timings["plain_torch"]["images_per_s"]
    print(f"U-Net fit, {n_samples} images 64x64 x {epochs} epochs: skvision "
          f"{timings['skvision']['images_per_s']:.1f} images/s, plain torch "
          f"{timings['plain_torch']['images_per_s']:.1f} images/s; ratio {ratio:.3f}")
    write_result("unet_overhead", {"machine": machine(), "n_samples": n_samples,
                                   "epochs": epochs, "repeats": repeats, "timings": timings,
                                   "ratio": ratio})


if __name__ == "__main__":
    main()
