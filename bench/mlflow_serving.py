"""MLflow serving: a model server's start time, and its latency against predict in process.

The digits pipeline (ImageFlattener + LogisticRegression) is saved with
``skvision.mlflow.save_model`` and served by ``mlflow models serve
--env-manager local`` on loopback (one worker). Measured:

* the server's start time: from launching the command to the first answer
  of ``/ping`` (importing MLflow and skvision, loading the model);
* the latency of one ``/invocations`` request of 1 and of 32 images
  (``{"inputs": [...]}``, JSON over HTTP), median of many after a warm-up;
* ``pipeline.predict`` on the same images in this process, interleaved
  with the requests so both share the machine's conditions.

Usage: python bench/mlflow_serving.py [--quick]
Writes bench/results/mlflow_serving.json.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from _harness import machine, write_result
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import skvision.mlflow
from skvision.datasets import load_digit_images
from skvision.preprocessing import ImageFlattener


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(path, port):
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                 os.environ["PATH"]]))
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", path, "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while True:
        if process.poll() is not None:
            raise RuntimeError("the model server exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 20 if args.quick else 200

    X, y = load_digit_images(return_X_y=True)
    pipeline = make_pipeline(ImageFlattener(), LogisticRegression(max_iter=300)).fit(X, y)
    path = os.path.join(tempfile.mkdtemp(), "digits")
    skvision.mlflow.save_model(pipeline, path, input_example=X[:2])
    port = free_port()
    process, start_s = start_server(path, port)
    result = {"machine": machine(), "start_s": start_s, "repeats": repeats, "batches": {}}
    try:
        for n in (1, 32):
            body = json.dumps({"inputs": X[:n].tolist()}).encode()

            def request(body=body):
                call = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", data=body,
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(call, timeout=60) as answer:
                    return json.loads(answer.read())["predictions"]

            assert request() == pipeline.predict(X[:n]).tolist()
            served, local = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                request()
                served.append(time.perf_counter() - t)
                t = time.perf_counter()
                pipeline.predict(X[:n])
                local.append(time.perf_counter() - t)
            served_ms = 1000 * statistics.median(served)
            local_ms = 1000 * statistics.median(local)
            result["batches"][str(n)] = {"served_ms": served_ms, "predict_ms": local_ms,
                                         "ratio": served_ms / local_ms}
            print(f"{n:>2} images: served {served_ms:.2f} ms, predict in process "
                  f"{local_ms:.2f} ms ({served_ms / local_ms:.1f}x)")
    finally:
        process.terminate()
        process.wait(30)
    print(f"server start: {start_s:.1f} s")
    write_result("mlflow_serving", result)


if __name__ == "__main__":
    main()
