"""Reading image files from object storage (S3 on loopback) against local files and a plain loop.

One run, the same 64x64 JPEGs (crops of scikit-image photographs), decoded
to 64x64 RGB batches of 64 by skvision's data layer (``FileImages`` through
``read_batches``, as training and inference read them):

* local: the files on disk;
* S3, 0 ms: the same objects from moto's S3 server (``s3://bench/...``);
* S3, 20 ms: through a reverse proxy that adds 20 ms to every request, as a
  distant store does;
* each S3 case with s3fs's default connection pool (botocore's 10) and with
  ``config_kwargs={"max_pool_connections": 64}`` in fsspec's ``s3``
  configuration: the pool caps the requests in flight;
* the same again from a stub S3 server (aiohttp, objects in memory, GET and
  HEAD only) at 0 and 20 ms: a fraction of moto's CPU per request, so what
  limits the reader itself shows;
* the baseline: the loop a user would write, one object at a time:
  ``fs.cat_file(url)`` (s3fs asks for the size first: two requests), then
  Pillow; and the same with ``cat_file(url, start=0)`` (one request).

The servers run in processes of their own (bench/_loopback.py), and the CPU
time of each (and of the reader, and of anything else on the machine) is
measured during each run: on a small machine the loopback server, not the
reader, can be what limits the rate. moto's server (werkzeug) closes the
connection after every answer, as no real store does; the proxy keeps the
reader's connections open. Nothing leaves the loopback interface.

Usage: python bench/remote_loading.py [--quick]
Writes bench/results/remote_loading.json.
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from _harness import best_throughput, machine, write_result
from PIL import Image

from skvision._data import (
    DECODE_THREADS,
    PREFETCH_BATCHES,
    REMOTE_PREFETCH_BATCHES,
    FileImages,
    read_batches,
    sequential_batches,
)
from skvision._storage import remote_settings

SIZE, BATCH_SIZE, DELAY_MS, BIG_POOL = 64, 64, 20, 64
BUCKET = "bench"
KEY_ID, SECRET = "FAKEKEYID0000", "FAKE-SECRET-bench"
HERE = os.path.dirname(os.path.abspath(__file__))


def write_files(root, n_images):
    """n_images 64x64 JPEGs: random crops of scikit-image photographs, scaled down by 2-4."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(),
              data.immunohistochemistry()]
    rng = np.random.default_rng(0)
    paths = []
    for index in range(n_images):
        photo = photos[index % len(photos)]
        side = int(rng.integers(128, 257))
        top = rng.integers(0, photo.shape[0] - side)
        left = rng.integers(0, photo.shape[1] - side)
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        path = os.path.join(root, f"{index:05d}.jpg")
        crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(path, quality=90)
        paths.append(path)
    return paths


class Server:
    """One of bench/_loopback.py's servers in a process of its own; its CPU time on demand."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_loopback.py"), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"bench/_loopback.py {' '.join(args)} did not start")
        self.endpoint = f"http://127.0.0.1:{int(line)}"

    def cpu_seconds(self):
        """User + system CPU seconds of the process so far (all its threads)."""
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def upload(endpoint, paths):
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
    client.create_bucket(Bucket=BUCKET)
    urls = []
    for path in paths:
        key = f"images/{os.path.basename(path)}"
        with open(path, "rb") as handle:
            client.put_object(Bucket=BUCKET, Key=key, Body=handle.read())
        urls.append(f"s3://{BUCKET}/{key}")
    return urls


def s3_config(endpoint, pool):
    """fsspec's ``s3`` configuration, as a user sets it (``~/.config/fsspec``)."""
    config = {"endpoint_url": endpoint, "key": KEY_ID, "secret": SECRET}
    if pool is not None:
        config["config_kwargs"] = {"max_pool_connections": pool}
    return config


def use(config):
    """Point s3fs at ``config``: fsspec caches one filesystem (and its pool) per configuration."""
    import fsspec

    fsspec.config.conf["s3"] = config


def read_skvision(paths):
    images = FileImages(paths, (SIZE, SIZE), 3)
    for _ in read_batches(images, sequential_batches(0, len(images), BATCH_SIZE), "cpu"):
        pass


def decode(source):
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def read_one_by_one(paths):
    for path in paths:
        decode(path)


def fetch_one_by_one(urls, **ranges):
    """The plain loop: one object at a time from s3fs, then Pillow."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(urls[0])
    for url in urls:
        decode(io.BytesIO(fs.cat_file(url, **ranges)))


def busy_seconds():
    """CPU seconds all cores of the machine have spent busy so far (/proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(field) for field in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: all but idle and iowait
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer files, 1 repeat")
    args = parser.parse_args()
    # The one-by-one loop's rate does not depend on how many files it reads:
    # fewer of them keep its 20 ms runs short.
    n_images, n_baseline, repeats = (128, 16, 1) if args.quick else (512, 256, 3)
    # Credentials and region from the configuration; never an instance-metadata
    # lookup, a proxy or a config file off this machine.
    os.environ.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                      AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                      NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)

    # The rates depend on free cores (reader and servers share two here):
    # say when something else is running, and record it.
    before, start = busy_seconds(), time.perf_counter()
    time.sleep(1.0)
    busy_before = (busy_seconds() - before) / (time.perf_counter() - start)
    if busy_before > 0.25:
        print(f"warning: {busy_before:.2f} cores were busy before the run; the rates will be "
              "low (the 'other' column shows how much ran alongside each measurement)")

    folder = tempfile.mkdtemp(prefix="skvision-bench-")
    paths = write_files(folder, n_images)
    servers = {}
    try:
        servers["moto"] = Server("moto")
        servers["proxy"] = Server("proxy", servers["moto"].endpoint, str(DELAY_MS))
        servers["stub_0ms"] = Server("stub", folder, "0")
        servers[f"stub_{DELAY_MS}ms"] = Server("stub", folder, str(DELAY_MS))
        urls = upload(servers["moto"].endpoint, paths)
        endpoints = {("moto", 0): servers["moto"].endpoint,
                     ("moto", DELAY_MS): servers["proxy"].endpoint,
                     ("stub", 0): servers["stub_0ms"].endpoint,
                     ("stub", DELAY_MS): servers[f"stub_{DELAY_MS}ms"].endpoint}
        readers = {"local_skvision": lambda: read_skvision(paths),
                   "local_one_by_one": lambda: read_one_by_one(paths)}
        baselines = {}
        for (server, delay), endpoint in endpoints.items():
            for pool in ("default", BIG_POOL):
                config = s3_config(endpoint, None if pool == "default" else BIG_POOL)
                readers[f"{server}_{delay}ms_pool_{pool}_skvision"] = (
                    lambda config=config: (use(config), read_skvision(urls)))
            config = s3_config(endpoint, None)
            baselines[f"{server}_{delay}ms_one_by_one"] = (
                lambda config=config: (use(config), fetch_one_by_one(urls[:n_baseline])))
            baselines[f"{server}_{delay}ms_one_by_one_single_get"] = (
                lambda config=config: (use(config),
                                       fetch_one_by_one(urls[:n_baseline], start=0)))

        # CPU seconds of the reader (this process), of each server and of
        # the rest of the machine, per run.
        cpu = {name: [] for name in (*readers, *baselines)}

        def measured(name, candidate):
            def run():
                before = {key: server.cpu_seconds() for key, server in servers.items()}
                machine_before, reader = busy_seconds(), time.process_time()
                start = time.perf_counter()
                candidate()
                wall = time.perf_counter() - start
                used = {f"{key}_cpu_s": server.cpu_seconds() - before[key]
                        for key, server in servers.items()}
                used["reader_cpu_s"] = time.process_time() - reader
                used["other_cpu_s"] = busy_seconds() - machine_before - sum(used.values())
                cpu[name].append(dict(wall_s=wall, **used))
            return run

        results = best_throughput({name: measured(name, candidate)
                                   for name, candidate in readers.items()},
                                  n_images=n_images, repeats=repeats)
        results.update(best_throughput({name: measured(name, candidate)
                                        for name, candidate in baselines.items()},
                                       n_images=n_baseline, repeats=repeats))
    finally:
        for server in servers.values():
            server.close()
    for name, result in results.items():
        fastest = min(cpu[name][1:], key=lambda run: run["wall_s"])  # not the warm-up
        result.update({key: value for key, value in fastest.items() if key != "wall_s"})
        # Cores each process kept busy: near 1, a Python process is the bottleneck.
        for key in [key[:-6] for key in fastest if key.endswith("_cpu_s")]:
            result[f"{key}_cores"] = fastest[f"{key}_cpu_s"] / fastest["wall_s"]

    rate = {name: result["images_per_s"] for name, result in results.items()}
    ratios = {}
    for server in ("moto", "stub"):
        for delay in (0, DELAY_MS):
            for pool in ("default", BIG_POOL):
                skvision = rate[f"{server}_{delay}ms_pool_{pool}_skvision"]
                tag = f"{server}_{delay}ms_pool_{pool}"
                ratios[f"remote_vs_local_{tag}"] = skvision / rate["local_skvision"]
                ratios[f"skvision_vs_one_by_one_{tag}"] = (
                    skvision / rate[f"{server}_{delay}ms_one_by_one"])
                ratios[f"skvision_vs_one_by_one_single_get_{tag}"] = (
                    skvision / rate[f"{server}_{delay}ms_one_by_one_single_get"])
    result = {
        "read": results, **ratios,
        "machine": dict(machine(), n_images=n_images, n_images_one_by_one=n_baseline,
                        image_size=SIZE, batch_size=BATCH_SIZE, files="64x64 JPEG q90",
                        delay_ms=DELAY_MS, big_pool=BIG_POOL, decode_threads=DECODE_THREADS,
                        prefetch_batches=PREFETCH_BATCHES,
                        remote_prefetch_batches=REMOTE_PREFETCH_BATCHES,
                        remote_settings=remote_settings(), cpus=os.cpu_count(),
                        cores_busy_before=busy_before),
    }
    columns = ["reader", *servers, "other"]
    print(f"{'':36s} {'img/s':>7s}  cores busy: " + " ".join(f"{c:>8s}" for c in columns))
    for name, entry in results.items():
        print(f"{name:36s} {entry['images_per_s']:7.0f}              "
              + " ".join(f"{entry[f'{c}_cores']:8.2f}" for c in columns))
    for key in ratios:
        print(f"{key}: {result[key]:.3f}")
    write_result("remote_loading", result)


if __name__ == "__main__":
    main()
