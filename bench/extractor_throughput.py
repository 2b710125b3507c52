"""PretrainedFeatureExtractor.transform against a plain timm forward loop.

Both run the same EfficientNet-Lite0 weights on the same images at the same
batch size (64) and threads, in one run, alternating repeats: the plain loop
resizes and normalizes each batch, runs ``forward_features`` and averages the
maps under ``torch.inference_mode()``, as a hand-written script would.

Usage: python bench/extractor_throughput.py [--quick] [--device cpu|cuda]
Writes bench/results/extractor_throughput.json.
"""

import argparse

import numpy as np
import timm
import torch
import torch.nn.functional as F
from _harness import best_throughput, machine, write_result

from skvision.nn.backbones import _load_into
from skvision.transfer import PretrainedFeatureExtractor

BATCH_SIZE = 64


def plain_timm(images_uint8, device):
    """The loop a user would write: timm model, weights, resize, normalize."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    _load_into(model, "efficientnet_lite0", None)
    model.reset_classifier(0)
    model.eval().to(device)
    mean = torch.tensor([0.5, 0.5, 0.5], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.5, 0.5], device=device).view(1, 3, 1, 1)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images_uint8), BATCH_SIZE):
            batch = torch.from_numpy(images_uint8[start:start + BATCH_SIZE]).to(device)
            batch = batch.permute(0, 3, 1, 2).float() / 255
            batch = F.interpolate(batch, size=(224, 224), mode="bicubic", antialias=True,
                                  align_corners=False)
            maps = model.forward_features((batch - mean) / std)
            outputs.append(maps.mean(dim=(2, 3)).cpu())
    return torch.cat(outputs).numpy()


def skvision_transform(images_uint8, device):
    extractor = PretrainedFeatureExtractor(batch_size=BATCH_SIZE, device=device)
    return extractor.fit(images_uint8[:1]).transform(images_uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 128 images")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    n_images, repeats = (128, 1) if args.quick else (256, 3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, 96, 96, 3), dtype=np.uint8)
    # Same features from both, or the comparison means nothing.
    np.testing.assert_allclose(skvision_transform(images[:8], args.device),
                               plain_timm(images[:8], args.device), rtol=1e-3, atol=1e-4)
    result = best_throughput(
        {"plain_timm": lambda: plain_timm(images, args.device),
         "skvision": lambda: skvision_transform(images, args.device)},
        n_images=n_images, repeats=repeats,
    )
    result["ratio"] = result["skvision"]["images_per_s"] / result["plain_timm"]["images_per_s"]
    result["machine"] = dict(machine(args.device), batch_size=BATCH_SIZE, n_images=n_images,
                             input="96x96x3 uint8")
    print(f"plain timm {result['plain_timm']['images_per_s']:.1f} img/s | skvision "
          f"{result['skvision']['images_per_s']:.1f} img/s | ratio {result['ratio']:.3f}")
    write_result("extractor_throughput", result)


if __name__ == "__main__":
    main()
