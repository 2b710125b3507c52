"""Training throughput of VisionTransformerClassifier.fit against a plain loop.

Both train the same skvision.nn.VisionTransformer (defaults: conv stem,
embed_dim 64, depth 4) on the same 28x28 single-channel data with the same
optimizer, schedule, loss, batch size, epochs and threads, in one run,
alternating repeats.

Usage: python bench/vit_overhead.py [--quick]
Writes bench/results/vit_overhead.json.
"""

import argparse

import numpy as np
import torch
from _harness import best_throughput, machine, plain_training_loop, write_result

from skvision import VisionTransformerClassifier
from skvision.nn.vit import VisionTransformer

N_SAMPLES, SIZE, BATCH_SIZE, EPOCHS, LR = 2048, 28, 64, 2, 0.002


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat instead of 5")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((N_SAMPLES, SIZE, SIZE), dtype=np.float32)
    y = rng.integers(0, 10, N_SAMPLES)
    images, labels = torch.from_numpy(X).unsqueeze(1), torch.from_numpy(y)

    def plain():
        torch.manual_seed(0)
        model = VisionTransformer(1, 10, (SIZE, SIZE), conv_stem=True)
        plain_training_loop(model, images, labels, batch_size=BATCH_SIZE, epochs=EPOCHS, lr=LR)

    def skvision():
        VisionTransformerClassifier(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, alpha=0.0,
                                    device="cpu", random_state=0).fit(X, y)

    result = best_throughput({"plain_torch": plain, "skvision": skvision},
                               n_images=N_SAMPLES * EPOCHS, repeats=1 if args.quick else 5)
    result["ratio"] = result["skvision"]["images_per_s"] / result["plain_torch"]["images_per_s"]
    result["machine"] = machine()
    print(f"ViT skvision {result['skvision']['images_per_s']:.0f} img/s | plain torch "
          f"{result['plain_torch']['images_per_s']:.0f} img/s | ratio {result['ratio']:.3f}")
    write_result("vit_overhead", result)


if __name__ == "__main__":
    main()
