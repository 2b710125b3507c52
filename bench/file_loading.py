"""Training and feature extraction from a folder of JPEG files, against torchvision's loaders.

One run, the same files (256 px JPEGs from scikit-image photographs, in an
``ImageFolder`` layout), the same model, image size, batch size and epochs:

* decode only: skvision's file reader (thread pool, prefetch, JPEG draft
  mode) against a plain sequential Pillow loop and against a torchvision
  ``ImageFolder`` + ``DataLoader(num_workers=2)``;
* fit: ``CNNClassifier(image_size=64)`` on the paths against a plain
  training loop over ``ImageFolder`` + ``DataLoader(num_workers=2)``;
* features: ``PretrainedFeatureExtractor(image_size=128)`` on the paths
  against timm's EfficientNet-Lite0 over the same ``DataLoader``.

The decoded-image cache question: the share of an epoch spent decoding,
measured from the same numbers (a cache could at most remove that share).

Usage: python bench/file_loading.py [--quick]
Writes bench/results/file_loading.json.
"""

import argparse
import copy
import os
import tempfile

import numpy as np
import timm
import torch
import torch.nn.functional as F
import torchvision
from _harness import best_throughput, machine, write_result
from PIL import Image
from torchvision.transforms import v2

from skvision import CNNClassifier, PretrainedFeatureExtractor
from skvision._data import FileImages, read_batches, sequential_batches
from skvision.datasets import load_image_folder
from skvision.nn.backbones import _load_into

SIZE, BATCH_SIZE, WORKERS = 64, 64, 2


def write_folder(root, n_images):
    """n_images 256 px JPEG crops of scikit-image photographs, one class per photograph."""
    from skimage import data

    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
    rng = np.random.default_rng(0)
    for index in range(n_images):
        name = list(photos)[index % len(photos)]
        photo = photos[name]
        top = rng.integers(0, photo.shape[0] - 256)
        left = rng.integers(0, photo.shape[1] - 256)
        os.makedirs(os.path.join(root, name), exist_ok=True)
        Image.fromarray(photo[top:top + 256, left:left + 256]).save(
            os.path.join(root, name, f"{index:05d}.jpg"), quality=90)


def image_folder(root, size):
    transform = v2.Compose([v2.PILToTensor(), v2.Resize((size, size), antialias=True),
                            v2.ToDtype(torch.float32, scale=True)])
    return torchvision.datasets.ImageFolder(root, transform=transform)


def loader(root, size, shuffle):
    return torch.utils.data.DataLoader(
        image_folder(root, size), batch_size=BATCH_SIZE, shuffle=shuffle, num_workers=WORKERS,
        generator=torch.Generator().manual_seed(0), persistent_workers=False)


def decode_sequential(paths):
    for path in paths:
        with Image.open(path) as image:
            np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def decode_skvision(paths):
    images = FileImages(paths, (SIZE, SIZE), 3)
    for _ in read_batches(images, sequential_batches(0, len(images), BATCH_SIZE), "cpu"):
        pass


def decode_dataloader(root):
    for _ in loader(root, SIZE, shuffle=False):
        pass


def plain_fit(root, module, epochs):
    """The usual script: ImageFolder + DataLoader workers + the shared plain loop per epoch."""
    model = copy.deepcopy(module).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = loader(root, SIZE, shuffle=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3,
                                                   total_steps=epochs * len(batches))
    model.train()
    for _ in range(epochs):
        for images, labels in batches:
            images = images.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model


def plain_features(root, size):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    _load_into(model, "efficientnet_lite0", None)
    model.reset_classifier(0)
    model.eval().to(memory_format=torch.channels_last)
    outputs = []
    with torch.inference_mode():
        for images, _ in loader(root, size, shuffle=False):
            images = ((images - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)
            outputs.append(model.forward_features(images).mean(dim=(2, 3)))
    return torch.cat(outputs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer files, 1 repeat")
    args = parser.parse_args()
    n_images, repeats, epochs = (384, 1, 1) if args.quick else (1536, 3, 2)
    root = tempfile.mkdtemp(prefix="skvision-bench-")
    write_folder(root, n_images)
    paths, labels = load_image_folder(root)
    params = dict(filters=(16, 32), image_size=SIZE, epochs=epochs, batch_size=BATCH_SIZE,
                  lr=3e-3, device="cpu", precision="32", random_state=0)  # the plain loop's
    few = slice(None, None, max(1, n_images // (BATCH_SIZE * 2)))  # every class
    module = CNNClassifier(**params).fit(paths[few], labels[few]).module_

    decode = best_throughput(
        {"pillow_sequential": lambda: decode_sequential(paths),
         "torchvision_dataloader": lambda: decode_dataloader(root),
         "skvision": lambda: decode_skvision(paths)},
        n_images=n_images, repeats=repeats)
    fit = best_throughput(
        {"torchvision_dataloader": lambda: plain_fit(root, module, epochs),
         "skvision": lambda: CNNClassifier(**params).fit(paths, labels)},
        n_images=n_images * epochs, repeats=repeats)
    n_features = min(n_images, 512)
    feature_root = tempfile.mkdtemp(prefix="skvision-bench-")
    write_folder(feature_root, n_features)
    feature_paths, _ = load_image_folder(feature_root)
    extractor = PretrainedFeatureExtractor(image_size=128, device="cpu")
    features = best_throughput(
        {"timm_dataloader": lambda: plain_features(feature_root, 128),
         "skvision": lambda: extractor.fit(feature_paths[:1]).transform(feature_paths)},
        n_images=n_features, repeats=max(1, repeats - 1))
    result = {
        "decode": decode, "fit": fit, "features": features,
        "decode_ratio_vs_sequential": decode["skvision"]["images_per_s"]
        / decode["pillow_sequential"]["images_per_s"],
        "decode_ratio_vs_dataloader": decode["skvision"]["images_per_s"]
        / decode["torchvision_dataloader"]["images_per_s"],
        "fit_ratio": fit["skvision"]["images_per_s"]
        / fit["torchvision_dataloader"]["images_per_s"],
        "features_ratio": features["skvision"]["images_per_s"]
        / features["timm_dataloader"]["images_per_s"],
        # A decoded cache could save at most the decoding share of an epoch.
        "decode_share_of_fit_epoch": fit["skvision"]["images_per_s"]
        / decode["skvision"]["images_per_s"],
        "machine": dict(machine(), n_images=n_images, epochs=epochs, image_size=SIZE,
                        batch_size=BATCH_SIZE, workers=WORKERS, files="256x256 JPEG q90"),
    }
    for key in ("decode_ratio_vs_sequential", "decode_ratio_vs_dataloader", "fit_ratio",
                "features_ratio", "decode_share_of_fit_epoch"):
        print(f"{key}: {result[key]:.3f}")
    print("decode img/s: " + ", ".join(f"{k} {v['images_per_s']:.0f}" for k, v in decode.items()))
    write_result("file_loading", result)


if __name__ == "__main__":
    main()
