"""StyleTransfer.transform iterations/s against a plain torch optimization loop.

Both optimize the pixels of the same 256x256 content image (scikit-image's
astronaut, resized) against the same style Gram matrices with the same
losses (skvision.nn.style), layers, weights and L-BFGS settings, on the same
frozen EfficientNet-Lite0, in one run with alternating repeats. The plain
loop is what a hand-written script does: hooks on the layers, normalization,
a closure for L-BFGS. skvision adds input validation, resizing, the loss
history and the output conversion.

Usage: python bench/style_throughput.py [--quick]
Writes bench/results/style_throughput.json.
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from _harness import best_throughput, machine, write_result
from skimage import data

from skvision.nn import build_backbone
from skvision.nn.style import FeatureTaps, content_loss, style_loss, total_variation_loss
from skvision.style import _DEFAULT_LAYERS, StyleTransfer

SIZE = 256
WEIGHTS = dict(content_weight=1.0, style_weight=1e5, tv_weight=1e-3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and repeats")
    args = parser.parse_args()
    n_iter, repeats = (10, 2) if args.quick else (40, 3)
    content = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    content = F.interpolate(content, size=(SIZE, SIZE), mode="bilinear", antialias=True,
                            align_corners=False).clamp(0, 1)
    content_uint8 = (content[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[None]
    style_image = data.coffee()[None]
    painter = StyleTransfer(n_iter=n_iter, image_size=SIZE, device="cpu", **WEIGHTS)
    painter.fit(style_image)
    grams = [painter.style_grams_[name] for name in painter._style_layers]
    layers = _DEFAULT_LAYERS["efficientnet_lite0"]
    taps = FeatureTaps(build_backbone("efficientnet_lite0"), [*layers["content"],
                                                              *layers["style"]])
    mean = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
    counts = {}

    def plain():
        with torch.no_grad():
            targets = taps((content - mean) / std)
        pixels = content.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([pixels], lr=1.0, max_iter=n_iter,
                                      line_search_fn="strong_wolfe")
        evaluations = 0

        def closure():
            nonlocal evaluations
            optimizer.zero_grad()
            picture = pixels.clamp(0, 1)
            features = taps((picture - mean) / std)
            loss = (WEIGHTS["content_weight"] * sum(
                        content_loss(features[n], targets[n]) for n in layers["content"])
                    + WEIGHTS["style_weight"] * style_loss(
                        [features[n] for n in layers["style"]], grams)
                    + WEIGHTS["tv_weight"] * total_variation_loss(picture))
            loss.backward()
            evaluations += 1
            return loss

        optimizer.step(closure)
        counts["plain_torch"] = evaluations

    def skvision():
        painter.transform(content_uint8)
        counts["skvision"] = len(painter.loss_history_)

    timings = best_throughput({"plain_torch": plain, "skvision": skvision}, n_images=1,
                              repeats=repeats)
    rates = {name: counts[name] / timings[name]["seconds"] for name in timings}
    ratio = rates["skvision"] / rates["plain_torch"]
    print(f"{SIZE}x{SIZE}, L-BFGS: skvision {rates['skvision']:.2f} evaluations/s "
          f"({counts['skvision']} per run), plain torch {rates['plain_torch']:.2f} "
          f"({counts['plain_torch']} per run); ratio {ratio:.3f}")
    write_result("style_throughput", {"machine": machine(), "image_size": SIZE,
                                      "n_iter": n_iter, "repeats": repeats,
                                      "timings": timings, "evaluations": counts,
                                      "evaluations_per_s": rates, "ratio": ratio})


if __name__ == "__main__":
    main()
