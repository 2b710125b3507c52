"""FasterRCNNDetector.fit and predict against a plain torchvision training loop.

Both train the same Faster R-CNN (torchvision's, with the detector's small
CNN backbone, anchors and heads, built by the same code) on the same
``make_shapes`` detection images (128x128, 1-3 objects) with AdamW, a
one-cycle schedule, batch size 8 and the same epochs and threads, in one run
with alternating repeats. The plain loop shuffles with a seeded permutation,
slices tensors and calls ``model(images, targets)``, as a hand-written
script does. Inference: ``predict`` against ``model.eval()(images)`` in
batches of 8.

Usage: python bench/detector_overhead.py [--quick]
Writes bench/results/detector_overhead.json.
"""

import argparse

import torch
from _harness import best_throughput, machine, write_result

from skvision.datasets import make_shapes
from skvision.detection import FasterRCNNDetector

LR, BATCH_SIZE = 0.003, 8


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    args = parser.parse_args()
    n_samples, epochs, repeats = (32, 1, 2) if args.quick else (96, 2, 3)
    X, targets = make_shapes(n_samples=n_samples, image_size=128, task="detection",
                             max_objects=3, random_state=0)
    params = dict(epochs=epochs, batch_size=BATCH_SIZE, lr=LR, device="cpu", random_state=0)
    reference = FasterRCNNDetector(**params).fit(X[:8], targets[:8])
    classes = list(reference.classes_)
    images = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    encoded = [{"boxes": torch.as_tensor(target["boxes"]),
                "labels": torch.as_tensor([classes.index(label) + 1
                                           for label in target["labels"]])}
               for target in targets]

    def build():
        torch.manual_seed(0)
        return reference._build_module(3, len(classes) + 1, (128, 128))

    def plain_fit():
        model = build()
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        steps = epochs * -(-n_samples // BATCH_SIZE)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps)
        generator = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            for index in torch.randperm(n_samples, generator=generator).split(BATCH_SIZE):
                losses = model(list(images[index]), [encoded[i] for i in index.tolist()])
                loss = sum(losses.values())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        return model

    def skvision_fit():
        return FasterRCNNDetector(**params).fit(X, targets)

    fit_timings = best_throughput({"plain_torch": plain_fit, "skvision": skvision_fit},
                                  n_images=n_samples * epochs, repeats=repeats)
    fit_ratio = (fit_timings["skvision"]["images_per_s"]
                 / fit_timings["plain_torch"]["images_per_s"])

    model = plain_fit().eval()
    detector = skvision_fit()

    def plain_predict():
        with torch.inference_mode():
            for start in range(0, n_samples, BATCH_SIZE):
                model(list(images[start:start + BATCH_SIZE]))

    predict_timings = best_throughput(
        {"plain_torch": plain_predict, "skvision": lambda: detector.predict(X)},
        n_images=n_samples, repeats=repeats)
    predict_ratio = (predict_timings["skvision"]["images_per_s"]
                     / predict_timings["plain_torch"]["images_per_s"])
    print(f"fit: skvision {fit_timings['skvision']['images_per_s']:.1f} images/s, plain "
          f"{fit_timings['plain_torch']['images_per_s']:.1f}; ratio {fit_ratio:.3f}")
    print(f"predict: skvision {predict_timings['skvision']['images_per_s']:.1f} images/s, plain "
          f"{predict_timings['plain_torch']['images_per_s']:.1f}; ratio {predict_ratio:.3f}")
    write_result("detector_overhead", {
        "machine": machine(), "n_samples": n_samples, "epochs": epochs, "repeats": repeats,
        "fit": fit_timings, "fit_ratio": fit_ratio,
        "predict": predict_timings, "predict_ratio": predict_ratio,
    })


if __name__ == "__main__":
    main()
