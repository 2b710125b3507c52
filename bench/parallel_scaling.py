"""Scaling out: cross-validation with n_jobs=2 against n_jobs=1, and apply_blocks workers.

1. ``cross_val_score(CNNClassifier, digits, cv=4)`` with ``n_jobs=1`` (one
   process, torch's threads over all cores) and ``n_jobs=2`` (two joblib
   worker processes, one torch thread each, worker start-up included);
   the ratio is the speed-up.
2. ``apply_blocks(PretrainedFeatureExtractor, dask array)`` images/s on a
   dask ``LocalCluster`` with 1 and 2 single-threaded workers (started with
   ``skvision.parallel.worker_config()``), against the extractor's own
   ``transform`` in this process (torch threads over all cores).
3. Data-parallel training: ``CNNClassifier.fit`` on digits, images/s, with
   2 processes of 1 thread (``torchrun``, an ``accelerate.Accelerator``)
   against 1 process of 2 threads: at the same effective batch (2 x 32
   against 64, the same training) and at the same batch a process (2 x 64);
   1 process of 1 thread for reference.
   Timed inside ``fit`` (process start-up and imports left out; the launch's
   wall time is recorded too).

Usage: python bench/parallel_scaling.py [--quick]
Writes bench/results/parallel_scaling.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from _harness import RESULTS, machine, write_result
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from skvision import CNNClassifier, PretrainedFeatureExtractor
from skvision.datasets import load_digit_images


def _timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _fold_fit_seconds(model, X, y, n_threads):
    """Seconds of one fold's fit (3/4 of the data) with ``n_threads`` torch threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        return _timed(lambda: clone(model).fit(X[: len(X) * 3 // 4], y[: len(X) * 3 // 4]))[1]
    finally:
        torch.set_num_threads(threads)


def cross_validation(X, y, epochs):
    model = CNNClassifier(epochs=epochs, device="cpu", random_state=0)
    # joblib gives each of its worker processes cores // n_jobs threads: no
    # oversubscription. What limits the speed-up is that one process already
    # uses every core: the ceiling is n_jobs * (one fold on all cores) /
    # (one fold on one thread) when each worker has one. The folds are timed
    # first, before any worker process exists.
    all_cores_s = _fold_fit_seconds(model, X, y, torch.get_num_threads())
    one_thread_s = _fold_fit_seconds(model, X, y, 1)
    ceiling = 2 * all_cores_s / one_thread_s
    serial, serial_s = _timed(lambda: cross_val_score(model, X, y, cv=4, n_jobs=1))
    parallel, parallel_s = _timed(lambda: cross_val_score(model, X, y, cv=4, n_jobs=2))
    worker_threads = Parallel(n_jobs=2)(delayed(torch.get_num_threads)() for _ in range(2))
    # Each worker trains two of the four folds one after the other; the rest
    # of the parallel run is starting the workers and moving the data.
    start_up_s = parallel_s - 2 * one_thread_s
    print(f"cross_val_score: n_jobs=1 {serial_s:.1f} s (mean {serial.mean():.3f}), "
          f"n_jobs=2 {parallel_s:.1f} s (mean {parallel.mean():.3f}); "
          f"speed-up {serial_s / parallel_s:.2f}x; torch threads per worker {worker_threads}; "
          f"one fold {all_cores_s:.1f} s on {torch.get_num_threads()} threads, "
          f"{one_thread_s:.1f} s on 1: ceiling {ceiling:.2f}x; worker start-up and data "
          f"about {start_up_s:.1f} s")
    return {"n_jobs_1_s": serial_s, "n_jobs_2_s": parallel_s,
            "speedup": serial_s / parallel_s, "scores_n_jobs_1": serial.tolist(),
            "scores_n_jobs_2": parallel.tolist(), "torch_threads_per_worker": worker_threads,
            "one_fold_all_threads_s": all_cores_s, "one_fold_one_thread_s": one_thread_s,
            "speedup_ceiling": ceiling, "start_up_s": start_up_s}


def block_extraction(images):
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from skvision.parallel import apply_blocks, worker_config

    extractor = PretrainedFeatureExtractor(image_size=(64, 64), device="cpu").fit(images[:2])
    extractor.transform(images[:64])  # warm-up
    _, local_s = _timed(lambda: extractor.transform(images))
    result = {"images": len(images), "in_process_images_per_s": len(images) / local_s}
    print(f"extractor.transform in this process: {len(images) / local_s:.0f} images/s")
    lazy = da.from_array(images, chunks=(len(images) // 8, *images.shape[1:]))
    for n_workers in (1, 2):
        with dask.config.set(worker_config()), LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True,
                dashboard_address=":0") as cluster, Client(cluster):
            apply_blocks(extractor, lazy[:64], "transform").compute()  # workers warm
            _, seconds = _timed(lambda: apply_blocks(extractor, lazy, "transform").compute())
        rate = len(images) / seconds
        result[f"workers_{n_workers}_images_per_s"] = rate
        print(f"apply_blocks on {n_workers} worker(s): {rate:.0f} images/s")
    result["workers_2_over_1"] = result["workers_2_images_per_s"] / result[
        "workers_1_images_per_s"]
    return result


def _fit_images_per_s(X, y, epochs, batch_size, accelerator=None):
    """Images trained on per second in ``fit`` (each process's share, all processes)."""
    # float32 on both sides: training under an accelerator is float32 (the
    # default "auto" precision would be bfloat16 for the one-process baseline).
    model = CNNClassifier(epochs=epochs, batch_size=batch_size, random_state=0,
                          device="cpu", precision="32", accelerator=accelerator)
    _, seconds = _timed(lambda: model.fit(X, y))
    processes = 1 if accelerator is None else accelerator.num_processes
    return (len(X) - len(X) % processes) * epochs / seconds


def data_parallel_worker(out, epochs, batch_size):
    """One process of the torchrun launch: rank 0 writes the rate."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    X, y = load_digit_images(return_X_y=True)
    rate = _fit_images_per_s(X, y, epochs, batch_size, accelerator)
    if accelerator.is_main_process:
        with open(out, "w") as file:
            json.dump({"images_per_s": rate, "threads": torch.get_num_threads()}, file)


def data_parallel(X, y, epochs):
    threads = torch.get_num_threads()
    result = {"images": len(X), "epochs": epochs}
    for n_threads in (1, 2):  # one thread: what each of the two processes has
        torch.set_num_threads(n_threads)
        rate = _fit_images_per_s(X, y, epochs, 64)
        result[f"one_process_{n_threads}_thread{'s' * (n_threads > 1)}_images_per_s"] = rate
        print(f"CNN fit, 1 process x {n_threads} thread(s), batch 64: {rate:.0f} images/s")
    torch.set_num_threads(threads)
    one = result["one_process_2_threads_images_per_s"]
    # Threads of one process wait for each other at every operation: other
    # work on the cores slows them far more than separate processes.
    result["load_average_1_min"] = os.getloadavg()[0]
    for batch_size in (32, 64):
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "rate.json")
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       "--nproc_per_node", "2", __file__, "--worker", out, str(epochs),
                       str(batch_size)]
            _, wall_s = _timed(lambda command=command: subprocess.run(
                command, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            with open(out) as file:
                rate = json.load(file)["images_per_s"]
        key = f"two_processes_1_thread_batch_{batch_size}"
        result[f"{key}_images_per_s"] = rate
        result[f"{key}_launch_wall_s"] = wall_s
        result[f"{key}_speedup"] = rate / one
        print(f"CNN fit, 2 processes x 1 thread, batch {batch_size} each: {rate:.0f} images/s "
              f"({rate / one:.2f}x; launch {wall_s:.1f} s wall)")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data")
    parser.add_argument("--only", choices=["data_parallel"],
                        help="run this part alone; the file keeps the others' last results")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        out, epochs, batch_size = args.worker
        return data_parallel_worker(out, int(epochs), int(batch_size))
    X, y = load_digit_images(return_X_y=True)
    epochs, n_images = (3, 400) if args.quick else (30, 4000)
    result = {"machine": machine()}
    if args.only:
        with open(os.path.join(RESULTS, "parallel_scaling.json")) as file:
            result = {**json.load(file), **result}
    # First: the dask cluster leaves processes behind for a while.
    result["data_parallel"] = data_parallel(X, y, 3 if args.quick else 20)
    if not args.only:
        result["cross_validation"] = cross_validation(X, y, epochs)
        images = np.concatenate([X] * (n_images // len(X) + 1))[:n_images]
        result["apply_blocks"] = block_extraction(images)
    write_result("parallel_scaling", result)


if __name__ == "__main__":
    main()
