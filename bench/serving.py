"""Serving speed: predict on one image and on 64, against the raw forward pass and ONNX Runtime.

For the default CNN at 8 px (digits) and at 28 px (MNIST's size), and a
fine-tuned EfficientNet-Lite0, all in float32, in one run on the same
inputs:

* ``predict`` (validation, the data layer, the forward pass, the labels);
* the raw torch module's forward pass on a ready float tensor under
  ``torch.inference_mode()``, as a hand-written server would call it;
* an ONNX Runtime session of the model ``skvision.to_onnx`` exports, fed
  the same arrays ``predict`` gets.

Each figure is the median of many calls after a warm-up, the calls of
``predict`` and of the raw forward interleaved so that they share the
machine's conditions (calls of a few milliseconds: the median is robust to
the odd slow one); ONNX Runtime runs after them, without spinning threads. Printed and
written: predict against the raw forward (ratio and milliseconds above it)
and ONNX Runtime's speed against torch eager at batch 1 and 64.

Usage: python bench/serving.py [--quick]
Writes bench/results/serving.json.
"""

import argparse
import statistics
import time

import numpy as np
import onnxruntime
import torch
from _harness import machine, write_result

import skvision
from skvision import CNNClassifier, FineTunedClassifier
from skvision.datasets import load_digit_images


def median_ms(calls, repeats):
    """Median milliseconds of each call, the calls interleaved (``{name: ms}``).

    Interleaving puts every candidate under the same conditions (frequency
    changes, other processes): their ratio is steadier than that of medians
    taken one after the other.
    """
    for _ in range(max(3, repeats // 10)):
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def raw_input(model, images):
    """The float tensor the module takes: what a server would have ready."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).float()
    if batch.ndim == 3:
        batch = batch[:, None]
    else:
        batch = batch.permute(0, 3, 1, 2)
    if images.dtype == np.uint8:
        batch = batch / 255
    return batch.contiguous(memory_format=torch.channels_last)


def measure(name, model, images, repeats):
    module = model.net_.module_.eval()
    options = onnxruntime.SessionOptions()
    # ONNX Runtime's threads spin after each run by default, taking the cores
    # from the torch calls timed next to it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        skvision.to_onnx(model, images[:1]).SerializeToString(), options,
        providers=["CPUExecutionProvider"])
    result = {}
    for batch_size in (1, 64):
        batch = images[:batch_size]
        tensor = raw_input(model, batch)
        with torch.inference_mode():
            np.testing.assert_array_equal(module(tensor).argmax(1).numpy(),
                                          np.searchsorted(model.classes_, model.predict(batch)))

            def raw(tensor=tensor):
                with torch.inference_mode():
                    return module(tensor)

        calls = max(20, repeats // batch_size)
        medians = median_ms({"raw": raw, "predict": lambda batch=batch: model.predict(batch)},
                            calls)
        medians.update(median_ms({"onnx": lambda batch=batch: session.run(None, {"X": batch})},
                                  calls))
        raw_ms, predict_ms, onnx_ms = medians["raw"], medians["predict"], medians["onnx"]
        result[f"batch_{batch_size}"] = {
            "raw_forward_ms": raw_ms, "predict_ms": predict_ms, "onnxruntime_ms": onnx_ms,
            "predict_over_raw_ratio": predict_ms / raw_ms,
            "predict_minus_raw_ms": predict_ms - raw_ms,
            "onnxruntime_speedup": raw_ms / onnx_ms,
        }
        print(f"{name:26s} batch {batch_size:2d}: raw {raw_ms:7.3f} ms | predict "
              f"{predict_ms:7.3f} ms ({predict_ms / raw_ms:.2f}x, +{predict_ms - raw_ms:.3f} ms)"
              f" | onnxruntime {onnx_ms:7.3f} ms ({raw_ms / onnx_ms:.2f}x torch's speed)",
              flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    repeats = 200 if args.quick else 2000
    X, y = load_digit_images(return_X_y=True)
    # MNIST's size: the digits upsampled to 28 px, as uint8 like MNIST's files.
    X28 = np.clip(torch.nn.functional.interpolate(
        torch.from_numpy(X)[:, None], size=(28, 28), mode="bilinear")[:, 0].numpy() * 255,
        0, 255).astype(np.uint8)
    common = dict(epochs=1, precision="32", random_state=0)
    models = {
        "cnn_8px": (CNNClassifier(**common).fit(X[:500], y[:500]), X[500:]),
        "cnn_28px": (CNNClassifier(**common).fit(X28[:500], y[:500]), X28[500:]),
        "fine_tuned_lite0_64px": (
            FineTunedClassifier(image_size=64, **common).fit(
                np.repeat(X28[:64, ..., None], 3, axis=3), y[:64]),
            np.repeat(X28[500:, ..., None], 3, axis=3)),
    }
    results = {name: measure(name, model, images, repeats)
               for name, (model, images) in models.items()}
    results["machine"] = dict(machine(), precision="32")
    write_result("serving", results)


if __name__ == "__main__":
    main()
