"""Pretrained weights downloaded on request, cached and verified (skvision.nn._hub).

Never the real network: a loopback HTTP server plays the Hugging Face hub
(``HF_ENDPOINT``) and its CDN, serving a tiny timm model's weights saved here,
and torchvision URLs are pointed at it.

The checks run in fresh interpreters with temporary caches, as a user's
program would. An interpreter spends seconds importing torch, timm and
torchvision, so each runs several scenarios one after the other (this file,
run as a script) and writes a report per scenario; each test asserts on its
scenario's report, its loopback server's requests and its share of stderr.
huggingface_hub reads ``HF_HUB_OFFLINE`` when imported, so there are two
interpreters: one online, one with ``HF_HUB_OFFLINE=1`` in its environment.
``HF_ENDPOINT`` and ``HF_HOME`` are read at import too, into
``huggingface_hub.constants``, whose values huggingface_hub and skvision read
at call time: each scenario points ``constants.ENDPOINT`` (and the URL
template made from it) at its own server and ``constants.HF_HUB_CACHE`` and
``TORCH_HOME`` (read by torch.hub at call time) at its own folder, and starts
without the weights an earlier scenario loaded, as a new process would.
"""

import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NAME = "test_resnet.r160_in1k"  # timm's tiny test network: 470k parameters
REPO = "timm/test_resnet.r160_in1k"
COMMIT = "5b1f3c2a9d8e7f60112233445566778899aabbcc"
LFS_SUFFIXES = (".safetensors", ".bin", ".pth")
EFFICIENTNET = "test_efficientnet.r160_in1k"
TORCHVISION = "mobilenet_v3_small"
SCENARIO_MARK = "\n=== skvision test_hub scenario: "  # starts each scenario's stderr

# One xdist worker runs the whole file (make test uses --dist loadgroup), so the
# two interpreters behind the module-scoped fixture start once, not per worker.
pytestmark = pytest.mark.xdist_group("hub")


class LoopbackHub:
    """The Hugging Face hub and its CDN on two loopback ports, as huggingface_hub sees them.

    Hub (``HF_ENDPOINT``), ``HEAD``/``GET /{org}/{repo}/resolve/{revision}/{file}``:

    * unknown repo: 401 with ``X-Error-Code: RepoNotFound``; unknown revision:
      404 ``RevisionNotFound``; missing file: 404 ``EntryNotFound`` with
      ``X-Repo-Commit`` (huggingface_hub then caches the file's absence);
    * LFS files (weights): 302 to the CDN with ``X-Repo-Commit``,
      ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and the pointer's
      ``ETag``, as huggingface.co answers;
    * other files (config.json): 200 with ``ETag`` (git blob id),
      ``X-Repo-Commit`` and ``Content-Length``.

    CDN (another port, so another origin: huggingface_hub downloads from the
    redirect's location without following it in the HEAD), ``GET
    /blobs/{sha256}`` and ``GET /models/{file}`` (torch hub URLs), with
    ``Range: bytes=n-`` answered by 206. ``fault`` breaks its answers:
    ``"short"`` a complete response holding half the file (fewer bytes than
    the hub announced), ``"corrupt"`` the right length of zeros, ``"drop"``
    half the announced bytes and a closed connection.
    """

    def __init__(self, repos=None, files=None):
        self.repos = repos or {}  # {repo_id: {filename: bytes}}
        self.files = files or {}  # {filename: bytes}, served at /models/
        self.blobs = {hashlib.sha256(content).hexdigest(): content
                      for files in self.repos.values() for content in files.values()}
        self.requests = []  # (server, method, path)
        self.fault = None
        self.stopped = False
        self.hub = self._serve("hub")
        self.cdn = self._serve("cdn")

    def _serve(self, role):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                """Silent: the tests read ``hub.requests``, not stderr."""

            def do_HEAD(self):
                self.respond(body=False)

            def do_GET(self):
                self.respond(body=True)

            def respond(self, body):
                hub.requests.append((role, self.command, self.path))
                path = unquote(urlsplit(self.path).path)
                if role == "hub":
                    self.hub_answer(path, body)
                else:
                    self.cdn_answer(path, body)

            def send(self, status, headers, content=b"", body=True):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if body:
                    self.wfile.write(content)

            def hub_answer(self, path, body):
                match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if match is None:
                    return self.send(404, {}, b"Not Found", body)
                repo, revision, filename = match.groups()
                if repo not in hub.repos:
                    return self.send(401, {"X-Error-Code": "RepoNotFound",
                                           "X-Error-Message": "Repository not found"}, b"", body)
                if revision not in ("main", COMMIT):
                    return self.send(404, {"X-Error-Code": "RevisionNotFound"}, b"", body)
                content = hub.repos[repo].get(filename)
                if content is None:
                    return self.send(404, {"X-Error-Code": "EntryNotFound",
                                           "X-Error-Message": "Entry not found",
                                           "X-Repo-Commit": COMMIT}, b"", body)
                git_oid = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
                if filename.endswith(LFS_SUFFIXES):
                    sha256 = hashlib.sha256(content).hexdigest()
                    return self.send(302, {
                        "Location": f"{hub.cdn_url}/blobs/{sha256}",
                        "X-Repo-Commit": COMMIT,
                        "X-Linked-Etag": f'"{sha256}"',
                        "X-Linked-Size": str(len(content)),
                        "ETag": f'"{git_oid}"',
                    }, b"", body)
                return self.send(200, {"X-Repo-Commit": COMMIT, "ETag": f'"{git_oid}"',
                                       "Content-Type": "application/json"}, content, body)

            def cdn_answer(self, path, body):
                if path.startswith("/blobs/"):
                    content = hub.blobs.get(path[len("/blobs/"):])
                else:
                    content = hub.files.get(path[len("/models/"):]) if path.startswith(
                        "/models/") else None
                if content is None:
                    return self.send(404, {}, b"NoSuchKey", body)
                start = 0
                ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if ranged:
                    start = int(ranged.group(1))
                part = content[start:]
                headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
                status = 206 if ranged else 200
                if ranged:
                    headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
                if hub.fault == "short":
                    part = part[: len(part) // 2]
                elif hub.fault == "corrupt":
                    part = bytes(len(part))
                elif hub.fault == "drop":
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(part)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if body:
                        self.wfile.write(part[: len(part) // 2])
                    self.close_connection = True
                    return None
                return self.send(status, headers, part, body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: stop() waits for the loop to see the request.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return server

    @property
    def hub_url(self):
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    @property
    def cdn_url(self):
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()


# --------------------------------------------------------------------------
# The scenarios, run in a child interpreter (this file as a script): each
# takes its spec (name, folder, endpoint, paths) and returns a JSON-able dict.


def _error_of(function, *args):
    from skvision.nn.backbones import BackboneWeightsError

    try:
        function(*args)
    except BackboneWeightsError as error:
        return str(error)
    return None


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _ask_parent(*words):
    """Have the parent process act (stop a server) and wait until it has."""
    print("ASK " + " ".join(words), flush=True)
    assert sys.stdin.readline().strip() == "ok"


def _load_and_compare(name, saved_path):
    """Default weights loaded as build_backbone does, against the saved file."""
    from safetensors.torch import load_file

    from skvision.nn import backbones
    from skvision.nn._hub import hub_weights_file

    saved = load_file(saved_path)
    network, _ = backbones._create_network(name)
    backbones._load_into(network, name, None)
    backbone = backbones.build_backbone(name).eval()
    reference = backbones.build_backbone(name, weights=saved).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        same_output = torch.equal(backbone(x), reference(x))
    return {"path": hub_weights_file(name), "equal": _equal_states(network.state_dict(), saved),
            "same_output": same_output}


def scenario_first_use(spec):
    return _load_and_compare(NAME, spec["saved"])


def scenario_second_use(spec):
    from skvision.nn._hub import hub_weights_file

    hub_weights_file(NAME)  # the first use, which downloads
    _ask_parent("stop", spec["name"])  # the endpoint now is a closed port
    return _load_and_compare(NAME, spec["saved"])


def scenario_broken_download(spec):
    from skvision.nn.backbones import build_backbone

    return {"error": _error_of(build_backbone, NAME)}


def scenario_pytorch_file(spec):
    from skvision.nn import backbones
    from skvision.nn._hub import hub_weights_file

    network, _ = backbones._create_network(EFFICIENTNET)
    backbones._load_into(network, EFFICIENTNET, None)
    saved = torch.load(spec["saved"], weights_only=True)
    return {"path": hub_weights_file(EFFICIENTNET),
            "equal": _equal_states(network.state_dict(), saved),
            "layers": len(backbones.build_backbone(EFFICIENTNET).levels),
            "missing": _error_of(hub_weights_file, "test_vit.r160_in1k")}


def scenario_hf_hub_id(spec):
    from safetensors.torch import load_file

    from skvision.nn import backbones
    from skvision.nn._hub import hub_model_config

    name = "hf-hub:" + REPO
    network, preprocessing = backbones._create_network(name)
    backbones._load_into(network, name, None)
    saved = load_file(spec["saved"])
    return {"equal": _equal_states(network.state_dict(), saved),
            "size": list(preprocessing.input_size),
            "stages": len(backbones.build_backbone(name).levels),
            "architecture": hub_model_config(name)["architecture"],
            "predictions": _save_hub_models(name, spec["folder"])}


def _save_hub_models(name, folder):
    """An extractor and a fine-tuned classifier on ``name``, saved; their predictions."""
    import numpy as np

    from skvision import FineTunedClassifier, PretrainedFeatureExtractor, save
    from skvision.datasets import load_digit_images

    X, y = load_digit_images(return_X_y=True)
    X, y = X[:40], y[:40] % 2
    extractor = PretrainedFeatureExtractor(backbone=name, image_size=32, device="cpu").fit(X)
    classifier = FineTunedClassifier(backbone=name, image_size=32, epochs=1, batch_size=20,
                                     device="cpu", random_state=0).fit(X, y)
    save(extractor, os.path.join(folder, "extractor.skv"))
    save(classifier, os.path.join(folder, "classifier.skv"))
    np.save(os.path.join(folder, "images.npy"), X)
    return {"extractor": extractor.transform(X).tolist(),
            "classifier": classifier.predict_proba(X).tolist(),
            "hub_config": classifier.hub_config_}


def _torchvision_default():
    import torchvision

    return torchvision.models.get_model_weights(TORCHVISION).DEFAULT


def scenario_torchvision_download(spec):
    from skvision.nn import backbones

    default = _torchvision_default()
    original = default.value.url

    def load_from(url):
        default.value.url = url
        return _error_of(backbones.build_backbone, TORCHVISION)

    try:
        base = spec["cdn"] + "/models/"
        refused = load_from(spec["closed"] + "/models/" + spec["file"])
        wrong_hash = load_from(base + spec["broken"])
        loaded = load_from(base + spec["file"])
        network, _ = backbones._create_network(TORCHVISION)
        backbones._load_into(network, TORCHVISION, None)
    finally:
        default.value.url = original
    saved = torch.load(spec["saved"], weights_only=True)
    return {"refused": refused, "wrong_hash": wrong_hash, "loaded": loaded,
            "equal": _equal_states(network.state_dict(), saved)}


def scenario_torchvision_dropped(spec):
    from skvision.nn.backbones import build_backbone

    default = _torchvision_default()
    original = default.value.url
    default.value.url = spec["cdn"] + "/models/" + spec["file"]
    try:
        return {"error": _error_of(build_backbone, TORCHVISION)}
    finally:
        default.value.url = original


def scenario_offline(spec):
    from skvision.nn.backbones import build_backbone

    return {"error": _error_of(build_backbone, NAME)}


def scenario_torchvision_offline(spec):
    import torchvision

    from skvision.nn import backbones
    from skvision.nn._hub import hub_weights_file

    default = _torchvision_default()
    error = _error_of(backbones.build_backbone, TORCHVISION)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(default.url))
    os.makedirs(os.path.dirname(path))
    torch.manual_seed(0)
    state = torchvision.models.get_model(TORCHVISION, weights=None).state_dict()
    torch.save(state, path)
    network, _ = backbones._create_network(TORCHVISION)
    backbones._load_into(network, TORCHVISION, None)
    return {"error": error, "path": hub_weights_file(TORCHVISION),
            "equal": _equal_states(network.state_dict(), state),
            "stages": len(backbones.build_backbone(TORCHVISION).levels),
            "detection": _error_of(hub_weights_file, "fasterrcnn_mobilenet_v3_large_fpn")}


SCENARIOS = {
    "first_use": scenario_first_use,
    "second_use": scenario_second_use,
    "short": scenario_broken_download,
    "corrupt": scenario_broken_download,
    "pytorch_file": scenario_pytorch_file,
    "hf_hub_id": scenario_hf_hub_id,
    "torchvision_download": scenario_torchvision_download,
    "torchvision_dropped": scenario_torchvision_dropped,
    "offline": scenario_offline,
    "torchvision_offline": scenario_torchvision_offline,
}


def _enter(spec):
    """Point huggingface_hub and torch.hub at this scenario's server and caches."""
    from huggingface_hub import constants

    from skvision.nn import backbones

    # The URL template is built from ENDPOINT at import: both follow the scenario.
    template = constants.HUGGINGFACE_CO_URL_TEMPLATE
    assert template.startswith(constants.ENDPOINT + "/"), template
    constants.HUGGINGFACE_CO_URL_TEMPLATE = spec["endpoint"] + template[len(constants.ENDPOINT):]
    constants.ENDPOINT = spec["endpoint"]
    constants.HF_HUB_CACHE = os.path.join(spec["folder"], "hf", "hub")
    os.environ["TORCH_HOME"] = os.path.join(spec["folder"], "torch")
    backbones._cached_weights.cache_clear()  # loaded weights, as a new process has none


def _child_main():
    # The slow imports first, while the parent prepares the servers; then the spec.
    for module in ("huggingface_hub", "timm", "torchvision", "skvision.nn.backbones"):
        importlib.import_module(module)
    spec = json.loads(sys.stdin.readline())
    reports = {}
    for scenario in spec["scenarios"]:
        name = scenario["name"]
        print(f"{SCENARIO_MARK}{name}", file=sys.stderr, flush=True)
        try:
            _enter(scenario)
            reports[name] = {"result": SCENARIOS[name](scenario)}
        except Exception:
            reports[name] = {"failure": traceback.format_exc()}
        sys.stderr.flush()
    Path(spec["report"]).write_text(json.dumps(reports))


# --------------------------------------------------------------------------
# The parent: servers, saved weights, the child interpreters.


class Child:
    """A fresh interpreter with temporary caches that runs scenarios sent to it.

    It starts at once and imports torch, timm, torchvision and skvision while
    the parent prepares; :meth:`send` then gives it its scenarios, dicts with
    a ``name`` (a key of ``SCENARIOS``), a ``folder`` (its caches), an
    ``endpoint`` (its Hugging Face hub) and what its function reads.
    :meth:`collect` answers their :func:`_ask_parent` with ``on_ask(words)``
    and returns ``{name: {"result" or "failure", "stderr"}}``. Its own
    environment (``env`` added) points at ``folder`` and at no live server.
    """

    def __init__(self, folder, **env):
        clean = {key: value for key, value in os.environ.items()
                 if not key.startswith(("HF_", "HUGGINGFACE_"))
                 and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        nowhere = LoopbackHub()
        nowhere.stop()
        clean.update(
            HF_HOME=str(folder / "hf"), TORCH_HOME=str(folder / "torch"),
            HF_ENDPOINT=nowhere.hub_url, NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT),
        )
        clean.update(env)
        folder.mkdir(parents=True)
        self.folder = folder
        self.stderr = open(folder / "stderr.txt", "w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, __file__], env=clean, cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.watchdog = threading.Timer(300, self.process.kill)
        self.watchdog.start()

    def send(self, scenarios):
        spec = {"scenarios": scenarios, "report": str(self.folder / "report.json")}
        self.process.stdin.write(json.dumps(spec) + "\n")
        self.process.stdin.flush()

    def collect(self, on_ask=None):
        stdout = []
        for line in iter(self.process.stdout.readline, ""):
            stdout.append(line)
            if line.startswith("ASK "):
                on_ask(line.split()[1:])
                self.process.stdin.write("ok\n")
                self.process.stdin.flush()
        returncode = self.process.wait()
        self.stderr.seek(0)
        text = self.stderr.read()
        report = self.folder / "report.json"
        assert returncode == 0 and report.exists(), "".join(stdout) + text
        reports = json.loads(report.read_text())
        for part in text.split(SCENARIO_MARK)[1:]:
            name, _, output = part.partition("\n")
            reports[name]["stderr"] = output
        return reports

    def close(self):
        self.watchdog.cancel()
        self.process.kill()
        self.process.wait()
        self.stderr.close()


def outcome(reports, name):
    """The result scenario ``name`` reported; its traceback if it raised."""
    assert not isinstance(reports, str), reports  # the interpreter failed
    report = reports[name]
    assert "failure" not in report, report["failure"]
    return report["result"]


def _collect(child, on_ask=None):
    """The reports of ``child``, or the text of its failure."""
    try:
        return child.collect(on_ask)
    except AssertionError as error:
        return str(error)


def cache_files(folder):
    return sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*")
                  if path.is_file() or path.is_symlink())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every scenario, each with its own server and caches, in two interpreters run together.

    ``online``: the hub up. ``offline``: ``HF_HUB_OFFLINE=1`` in the
    environment, with a hub that is up and would answer, to see no request.
    """
    folder = tmp_path_factory.mktemp("runs")
    children = {
        # TQDM_POSITION=-1: huggingface_hub's progress bar even without a terminal.
        "online": Child(folder / "online-interpreter", TQDM_POSITION="-1"),
        "offline": Child(folder / "offline-interpreter", HF_HUB_OFFLINE="1"),
    }
    hubs = {}
    try:
        yield _run_all(children, hubs, folder, tmp_path_factory)
    finally:
        for child in children.values():
            child.close()
        for hub in hubs.values():
            hub.stop()


def _run_all(children, hubs, folder, tmp_path_factory):
    """Prepare the servers while the children import, run the scenarios, collect the reports."""
    import timm
    import torchvision
    from timm.models._hub import save_for_hf

    # The files of timm's repo for NAME, as timm.models.save_for_hf writes them.
    repo_folder = tmp_path_factory.mktemp("repo")
    torch.manual_seed(0)
    save_for_hf(timm.create_model(NAME, pretrained=False), repo_folder, safe_serialization=True)
    files = {path.name: path.read_bytes() for path in repo_folder.iterdir()}
    repo = {REPO: files}
    safetensors = str(repo_folder / "model.safetensors")

    hubs["offline"] = LoopbackHub(repo)
    children["offline"].send([
        {"name": name, "folder": str(folder / name), "endpoint": hubs["offline"].hub_url}
        for name in ("offline", "torchvision_offline")])

    torch.manual_seed(1)
    state = timm.create_model(EFFICIENTNET, pretrained=False).state_dict()
    torch.save(state, folder / "efficientnet.pth")
    torch.manual_seed(0)
    state = torchvision.models.get_model(TORCHVISION, weights=None).state_dict()
    torch.save(state, folder / "torchvision.pth")
    content = (folder / "torchvision.pth").read_bytes()
    filename = f"{TORCHVISION}-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    broken = f"{TORCHVISION}-{hashlib.sha256(b'other').hexdigest()[:8]}.pth"
    hubs.update({
        "first_use": LoopbackHub(repo), "second_use": LoopbackHub(repo),
        "short": LoopbackHub(repo), "corrupt": LoopbackHub(repo),
        "pytorch_file": LoopbackHub({f"timm/{EFFICIENTNET}": {
            "pytorch_model.bin": (folder / "efficientnet.pth").read_bytes()}}),
        "hf_hub_id": LoopbackHub(repo),
        "torchvision_download": LoopbackHub(files={filename: content, broken: content}),
        "torchvision_dropped": LoopbackHub(files={filename: content}),
        "closed": LoopbackHub(),
    })
    hubs["short"].fault, hubs["corrupt"].fault = "short", "corrupt"
    hubs["torchvision_dropped"].fault = "drop"
    hubs["closed"].stop()
    extra = {
        "first_use": {"saved": safetensors}, "second_use": {"saved": safetensors},
        "pytorch_file": {"saved": str(folder / "efficientnet.pth")},
        "hf_hub_id": {"saved": safetensors},
        "torchvision_download": {"cdn": hubs["torchvision_download"].cdn_url,
                                 "closed": hubs["closed"].cdn_url, "file": filename,
                                 "broken": broken, "saved": str(folder / "torchvision.pth")},
        "torchvision_dropped": {"cdn": hubs["torchvision_dropped"].cdn_url, "file": filename},
    }
    children["online"].send([
        {"name": name, "folder": str(folder / name), "endpoint": hubs[name].hub_url,
         **extra.get(name, {})}
        for name in ("first_use", "second_use", "short", "corrupt", "pytorch_file",
                     "hf_hub_id", "torchvision_download", "torchvision_dropped")])
    seen = {}  # requests a server had when a scenario asked to stop it

    def stop(words):
        assert words[0] == "stop", words
        seen[words[1]] = len(hubs[words[1]].requests)
        hubs[words[1]].stop()

    return SimpleNamespace(
        online=_collect(children["online"], stop), offline=_collect(children["offline"]),
        hubs=hubs, seen=seen, folder=folder, files=files, filename=filename, broken=broken)


# --------------------------------------------------------------------------
# The tests.


def test_first_use_downloads_into_the_cache(runs):
    result = outcome(runs.online, "first_use")
    hub = runs.hubs["first_use"]
    assert result["equal"] and result["same_output"]
    cache = runs.folder / "first_use" / "hf" / "hub"
    assert Path(result["path"]).is_relative_to(cache)
    sha256 = hashlib.sha256(runs.files["model.safetensors"]).hexdigest()
    assert f"models--timm--test_resnet.r160_in1k/blobs/{sha256}" in cache_files(cache)
    assert ("hub", "HEAD", f"/{REPO}/resolve/main/model.safetensors") in hub.requests
    # One download: later calls in the process read the cache without a request.
    assert [r for r in hub.requests if r[:2] == ("cdn", "GET")] == [
        ("cdn", "GET", f"/blobs/{sha256}")]
    # huggingface_hub's progress bar, named after the download URL's tail.
    stderr = runs.online["first_use"]["stderr"]
    assert "100%" in stderr and sha256[-30:] in stderr


def test_second_use_reads_the_cache_without_the_network(runs):
    result = outcome(runs.online, "second_use")
    hub = runs.hubs["second_use"]
    # The first use downloaded, then the server stopped (its endpoint a closed port).
    assert any(r[:2] == ("cdn", "GET") for r in hub.requests)
    assert runs.seen["second_use"] == len(hub.requests)
    assert result["equal"] and result["same_output"]
    assert Path(result["path"]).is_relative_to(runs.folder / "second_use" / "hf" / "hub")


def test_offline_with_an_empty_cache_names_the_file(runs):
    error = outcome(runs.offline, "offline")["error"]
    assert error is not None and "HF_HUB_OFFLINE=1" in error
    assert "'model.safetensors'" in error and REPO in error and "weights=" in error
    assert str(runs.folder / "offline" / "hf" / "hub") in error  # where the cache is
    assert runs.hubs["offline"].requests == []


@pytest.mark.parametrize("fault", ["short", "corrupt"])
def test_a_broken_download_names_the_file_and_leaves_no_trace(runs, fault):
    error = outcome(runs.online, fault)["error"]
    assert error is not None and "'model.safetensors'" in error and REPO in error
    assert ("Consistency check failed" if fault == "short" else "corrupt or incomplete") in error
    assert any(r[:2] == ("cdn", "GET") for r in runs.hubs[fault].requests)
    files = cache_files(runs.folder / fault / "hf" / "hub")
    assert not [f for f in files if "/blobs/" in f or "/snapshots/" in f or "incomplete" in f]


def test_the_pytorch_file_when_the_repo_has_no_safetensors(runs):
    result = outcome(runs.online, "pytorch_file")
    assert result["equal"] and result["path"].endswith("pytorch_model.bin")
    assert ("hub", "HEAD", f"/timm/{EFFICIENTNET}/resolve/main/model.safetensors"
            ) in runs.hubs["pytorch_file"].requests
    # A repo the hub does not have: a clear error, at once (no retries).
    assert "RepositoryNotFound" in result["missing"]
    assert "'model.safetensors'" in result["missing"]


def test_hf_hub_ids_build_from_the_repo_config(runs):
    result = dict(outcome(runs.online, "hf_hub_id"))
    result.pop("predictions")  # test_a_model_with_an_hf_hub_backbone_loads_offline's
    assert result == {"equal": True, "size": [160, 160], "stages": 5,
                      "architecture": "test_resnet"}
    assert ("hub", "GET", f"/{REPO}/resolve/main/config.json") in runs.hubs["hf_hub_id"].requests


# A fresh interpreter with no cache, HF_HUB_OFFLINE=1 and every socket refused
# loads the models scenario_hf_hub_id saved; then a copy of one rewritten as
# the previous format (no hub_config_) says why it needs the hub.
_OFFLINE_LOAD = """
import json, os, socket, sys, zipfile

def refused(*args, **kwargs):
    raise OSError("sockets are refused in this test")

socket.socket.connect = socket.create_connection = refused
import numpy as np
from skvision import load

folder = sys.argv[1]
X = np.load(os.path.join(folder, "images.npy"))
report = {"extractor": load(os.path.join(folder, "extractor.skv")).transform(X).tolist(),
          "classifier": load(os.path.join(folder, "classifier.skv")).predict_proba(X).tolist()}
with zipfile.ZipFile(os.path.join(folder, "classifier.skv")) as source, zipfile.ZipFile(
        os.path.join(folder, "format2.skv"), "w") as target:
    for info in source.infolist():
        data = source.read(info.filename)
        if info.filename == "metadata.json":
            document = json.loads(data)
            document["format_version"] = 2
            del document["estimator"]["state"]["__dict__"]["hub_config_"]
            data = json.dumps(document).encode()
        target.writestr(info, data)
try:
    load(os.path.join(folder, "format2.skv"))
except ValueError as error:
    report["format2"] = str(error)
print(json.dumps(report))
"""


def test_a_model_with_an_hf_hub_backbone_loads_offline(runs, tmp_path):
    """Saved with the hub up; loaded with no cache, HF_HUB_OFFLINE=1 and no sockets."""
    saved = outcome(runs.online, "hf_hub_id")["predictions"]
    assert saved["hub_config"]["architecture"] == "test_resnet"
    assert saved["hub_config"]["revision"] == COMMIT
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home"),
           "TORCH_HOME": str(tmp_path / "empty-torch-home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _OFFLINE_LOAD, str(runs.folder / "hf_hub_id")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["extractor"] == saved["extractor"]
    assert loaded["classifier"] == saved["classifier"]
    assert "format 2" in loaded["format2"] and "HF_HUB_OFFLINE=1" in loaded["format2"]
    assert not (tmp_path / "empty-hf-home").exists()


def test_torchvision_offline_names_the_path_then_uses_the_placed_file(runs):
    result = outcome(runs.offline, "torchvision_offline")
    expected = str(runs.folder / "torchvision_offline" / "torch" / "hub" / "checkpoints"
                   / "mobilenet_v3_small-047dcff4.pth")
    assert "HF_HUB_OFFLINE=1" in result["error"] and repr(expected) in result["error"]
    assert result["path"] == expected and result["equal"] and result["stages"] == 13
    assert "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth" in result["detection"]


def test_torchvision_downloads_through_the_torch_hub(runs):
    result = outcome(runs.online, "torchvision_download")
    filename, broken = runs.filename, runs.broken
    assert "Could not download" in result["refused"] and filename in result["refused"]
    assert "invalid hash value" in result["wrong_hash"] and broken in result["wrong_hash"]
    assert result["loaded"] is None and result["equal"]
    checkpoints = runs.folder / "torchvision_download" / "torch" / "hub" / "checkpoints"
    assert cache_files(checkpoints) == [filename]  # no .partial, no broken file
    dropped = outcome(runs.online, "torchvision_dropped")["error"]
    assert "Could not download" in dropped and filename in dropped
    assert any(r[:2] == ("cdn", "GET") for r in runs.hubs["torchvision_dropped"].requests)
    dropped_cache = runs.folder / "torchvision_dropped" / "torch" / "hub" / "checkpoints"
    assert cache_files(dropped_cache) == []


if __name__ == "__main__":  # a Child
    _child_main()
