"""PretrainedFeatureExtractor.transform against a plain timm forward loop.

Both run the same weights on the same images at the same batch size (64)
and threads, in one run, alternating repeats: the plain loop resizes and
normalizes each batch, runs timm's ``forward_features`` and
``forward_head(pre_logits=True)`` (a CNN's pooled maps, a ViT's class
token) under ``torch.inference_mode()``, as a hand-written script would.

``--backbone`` picks the network: the default EfficientNet-Lite0 with its
ImageNet weights, or any timm name with random weights (the same ones on
both sides; none are downloaded), e.g. ``vit_small_patch16_224``.

Usage: python bench/extractor_throughput.py [--quick] [--device cpu|cuda]
       [--backbone NAME]
Writes bench/results/extractor_throughput.json (``_<backbone>`` appended
for another backbone).
"""

import argparse

import numpy as np
import timm
import torch
import torch.nn.functional as F
from _harness import best_throughput, machine, write_result

from skvision.nn.backbones import REGISTRY
from skvision.transfer import PretrainedFeatureExtractor

BATCH_SIZE = 64


def plain_model(extractor):
    """The timm model a user would create, with the weights of a fitted extractor."""
    backbone = extractor.backbone
    architecture = REGISTRY[backbone].architecture if backbone in REGISTRY else backbone
    # A transformer at another size than its weights': timm's dynamic size, as skvision builds it.
    dynamic = {"dynamic_img_size": True} if timm.get_pretrained_cfg(
        architecture).fixed_input_size else {}
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **dynamic)
    model.load_state_dict(extractor.backbone_.network.state_dict())
    return model


def plain_timm(model, images_uint8, device, size=None, batch_size=BATCH_SIZE):
    """The loop a user would write: timm model, resize, normalize, features."""
    config = timm.data.resolve_data_config({}, model=model)
    size, interpolation = size or config["input_size"][1:], config["interpolation"]
    model.eval().to(device)
    mean = torch.tensor(config["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(config["std"], device=device).view(1, 3, 1, 1)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images_uint8), batch_size):
            batch = torch.from_numpy(images_uint8[start:start + batch_size]).to(device)
            batch = batch.permute(0, 3, 1, 2).float() / 255
            batch = F.interpolate(batch, size=size, mode=interpolation, antialias=True,
                                  align_corners=False)
            features = model.forward_features((batch - mean) / std)
            outputs.append(model.forward_head(features, pre_logits=True).cpu())
    return torch.cat(outputs).numpy()


def skvision_extractor(backbone, device, images):
    """Fitted once (fit only loads the network): the timed part is ``transform``."""
    extractor = PretrainedFeatureExtractor(
        backbone=backbone, weights=None if backbone in REGISTRY else False,
        batch_size=BATCH_SIZE, device=device)
    return extractor.fit(images[:1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 128 images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    n_images, repeats = (128, 1) if args.quick else (256, 3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, 96, 96, 3), dtype=np.uint8)
    extractor = skvision_extractor(args.backbone, args.device, images)
    model = plain_model(extractor)
    # Same features from both, or the comparison means nothing.
    np.testing.assert_allclose(extractor.transform(images[:8]),
                               plain_timm(model, images[:8], args.device), rtol=1e-3, atol=1e-4)
    result = best_throughput(
        {"plain_timm": lambda: plain_timm(model, images, args.device),
         "skvision": lambda: extractor.transform(images)},
        n_images=n_images, repeats=repeats,
    )
    result["ratio"] = result["skvision"]["images_per_s"] / result["plain_timm"]["images_per_s"]
    result["machine"] = dict(machine(args.device), batch_size=BATCH_SIZE, n_images=n_images,
                             input="96x96x3 uint8", backbone=args.backbone)
    print(f"plain timm {result['plain_timm']['images_per_s']:.1f} img/s | skvision "
          f"{result['skvision']['images_per_s']:.1f} img/s | ratio {result['ratio']:.3f}")
    suffix = "" if args.backbone == "efficientnet_lite0" else f"_{args.backbone}"
    write_result(f"extractor_throughput{suffix}", result)


if __name__ == "__main__":
    main()
