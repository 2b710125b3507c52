"""Pretrained weights downloaded on request, cached and verified (skvision.nn._hub).

Never the real network: a loopback HTTP server plays the Hugging Face hub
(``HF_ENDPOINT``) and its CDN, serving a tiny timm model's weights saved here,
and torchvision URLs are pointed at it. huggingface_hub reads ``HF_ENDPOINT``,
``HF_HUB_OFFLINE`` and ``HF_HOME`` when imported, so each check runs in a
subprocess whose caches (``HF_HOME``, ``TORCH_HOME``) are temporary folders.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NAME = "test_resnet.r160_in1k"  # timm's tiny test network: 470k parameters
REPO = "timm/test_resnet.r160_in1k"
COMMIT = "5b1f3c2a9d8e7f60112233445566778899aabbcc"
LFS_SUFFIXES = (".safetensors", ".bin", ".pth")


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
                pass

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
        threading.Thread(target=server.serve_forever, daemon=True).start()
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


@pytest.fixture(scope="module")
def saved_repo(tmp_path_factory):
    """The files of timm's repo for NAME, as ``timm.models.save_for_hf`` writes them."""
    import timm
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(NAME, pretrained=False)
    folder = tmp_path_factory.mktemp("repo")
    save_for_hf(model, folder, safe_serialization=True)
    return folder, {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture
def hub(saved_repo):
    server = LoopbackHub({REPO: saved_repo[1]})
    yield server
    server.stop()


def run_python(code, tmp_path, **env):
    """Run ``code`` in a fresh interpreter with temporary caches; its reported dict."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("HF_", "HUGGINGFACE_"))
             and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    clean.update(
        HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"),
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT),
    )
    clean.update(env)
    prelude = (
        "import json, os, sys, torch\n"
        "from skvision.nn import backbones\n"
        "from skvision.nn.backbones import BackboneWeightsError, build_backbone\n"
        "from skvision.nn._hub import hub_weights_file\n"
        "def report(**values):\n"
        "    print('RESULT ' + json.dumps(values), flush=True)\n"
        "def error_of(function, *args):\n"
        "    try:\n"
        "        function(*args)\n"
        "    except BackboneWeightsError as error:\n"
        "        return str(error)\n"
        "    return None\n"
        "def equal_states(a, b):\n"
        "    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)\n"
    )
    done = subprocess.run([sys.executable, "-c", prelude + code], env=clean, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    return json.loads(lines[-1][len("RESULT "):]), done.stderr


def cache_files(folder):
    return sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*")
                  if path.is_file() or path.is_symlink())


LOAD_AND_COMPARE = """
from safetensors.torch import load_file
saved = load_file(os.environ["SAVED"])
name = os.environ["NAME"]
network, _ = backbones._create_network(name)
backbones._load_into(network, name, None)
backbone = build_backbone(name).eval()
reference = build_backbone(name, weights=saved).eval()
x = torch.randn(1, 3, 32, 32)
with torch.no_grad():
    same_output = torch.equal(backbone(x), reference(x))
report(path=hub_weights_file(name), equal=equal_states(network.state_dict(), saved),
       same_output=same_output)
"""


def test_first_use_downloads_into_the_cache(hub, saved_repo, tmp_path):
    # TQDM_POSITION=-1: huggingface_hub's progress bar even without a terminal.
    result, stderr = run_python(LOAD_AND_COMPARE, tmp_path, HF_ENDPOINT=hub.hub_url, NAME=NAME,
                                SAVED=str(saved_repo[0] / "model.safetensors"),
                                TQDM_POSITION="-1")
    assert result["equal"] and result["same_output"]
    cache = tmp_path / "hf" / "hub"
    assert Path(result["path"]).is_relative_to(cache)
    sha256 = hashlib.sha256(saved_repo[1]["model.safetensors"]).hexdigest()
    assert f"models--timm--test_resnet.r160_in1k/blobs/{sha256}" in cache_files(cache)
    assert ("hub", "HEAD", f"/{REPO}/resolve/main/model.safetensors") in hub.requests
    # One download: later calls in the process read the cache without a request.
    assert [r for r in hub.requests if r[:2] == ("cdn", "GET")] == [
        ("cdn", "GET", f"/blobs/{sha256}")]
    # huggingface_hub's progress bar, named after the download URL's tail.
    assert "100%" in stderr and sha256[-30:] in stderr


def test_second_use_reads_the_cache_without_the_network(hub, saved_repo, tmp_path):
    run_python("report(path=hub_weights_file(os.environ['NAME']))", tmp_path,
               HF_ENDPOINT=hub.hub_url, NAME=NAME)
    seen = len(hub.requests)
    hub.stop()  # HF_ENDPOINT now points at a closed port
    result, _ = run_python(LOAD_AND_COMPARE, tmp_path, HF_ENDPOINT=hub.hub_url, NAME=NAME,
                           SAVED=str(saved_repo[0] / "model.safetensors"))
    assert result["equal"] and result["same_output"]
    assert len(hub.requests) == seen


def test_offline_with_an_empty_cache_names_the_file(hub, tmp_path):
    result, _ = run_python(
        "report(error=error_of(build_backbone, os.environ['NAME']))", tmp_path,
        HF_ENDPOINT=hub.hub_url, HF_HUB_OFFLINE="1", NAME=NAME)
    error = result["error"]
    assert error is not None and "HF_HUB_OFFLINE=1" in error
    assert "'model.safetensors'" in error and REPO in error and "weights=" in error
    assert str(tmp_path / "hf" / "hub") in error  # where the cache is
    assert hub.requests == []


@pytest.mark.parametrize("fault", ["short", "corrupt"])
def test_a_broken_download_names_the_file_and_leaves_no_trace(hub, tmp_path, fault):
    hub.fault = fault
    result, _ = run_python(
        "report(error=error_of(build_backbone, os.environ['NAME']))", tmp_path,
        HF_ENDPOINT=hub.hub_url, NAME=NAME)
    error = result["error"]
    assert error is not None and "'model.safetensors'" in error and REPO in error
    assert ("Consistency check failed" if fault == "short" else "corrupt or incomplete") in error
    assert any(r[:2] == ("cdn", "GET") for r in hub.requests)
    files = cache_files(tmp_path / "hf" / "hub")
    assert not [f for f in files if "/blobs/" in f or "/snapshots/" in f or "incomplete" in f]


def test_the_pytorch_file_when_the_repo_has_no_safetensors(saved_repo, tmp_path):
    import timm

    torch.manual_seed(1)
    state = timm.create_model("test_efficientnet.r160_in1k", pretrained=False).state_dict()
    torch.save(state, tmp_path / "saved.pth")
    server = LoopbackHub({"timm/test_efficientnet.r160_in1k": {
        "pytorch_model.bin": (tmp_path / "saved.pth").read_bytes()}})
    try:
        result, _ = run_python(
            "name = os.environ['NAME']\n"
            "network, _ = backbones._create_network(name)\n"
            "backbones._load_into(network, name, None)\n"
            "saved = torch.load(os.environ['SAVED'], weights_only=True)\n"
            "report(path=hub_weights_file(name), equal=equal_states(network.state_dict(), saved),\n"
            "       layers=len(build_backbone(name).stages),\n"
            "       missing=error_of(hub_weights_file, 'test_vit.r160_in1k'))\n",
            tmp_path, HF_ENDPOINT=server.hub_url, NAME="test_efficientnet.r160_in1k",
            SAVED=str(tmp_path / "saved.pth"))
    finally:
        server.stop()
    assert result["equal"] and result["path"].endswith("pytorch_model.bin")
    assert ("hub", "HEAD", "/timm/test_efficientnet.r160_in1k/resolve/main/model.safetensors"
            ) in server.requests
    # A repo the hub does not have: a clear error, at once (no retries).
    assert "RepositoryNotFound" in result["missing"]
    assert "'model.safetensors'" in result["missing"]


def test_hf_hub_ids_build_from_the_repo_config(hub, saved_repo, tmp_path):
    result, _ = run_python(
        "name = 'hf-hub:' + os.environ['REPO']\n"
        "from safetensors.torch import load_file\n"
        "from skvision.nn._hub import hub_model_config\n"
        "network, preprocessing = backbones._create_network(name)\n"
        "backbones._load_into(network, name, None)\n"
        "saved = load_file(os.environ['SAVED'])\n"
        "report(equal=equal_states(network.state_dict(), saved),\n"
        "       size=list(preprocessing.input_size), stages=len(build_backbone(name).stages),\n"
        "       architecture=hub_model_config(name)['architecture'])\n",
        tmp_path, HF_ENDPOINT=hub.hub_url, REPO=REPO,
        SAVED=str(saved_repo[0] / "model.safetensors"))
    assert result == {"equal": True, "size": [160, 160], "stages": 5,
                      "architecture": "test_resnet"}
    assert ("hub", "GET", f"/{REPO}/resolve/main/config.json") in hub.requests


TORCHVISION = """
import torchvision
name = "mobilenet_v3_small"
default = torchvision.models.get_model_weights(name).DEFAULT
"""


def test_torchvision_offline_names_the_path_then_uses_the_placed_file(tmp_path):
    result, _ = run_python(
        TORCHVISION + "error = error_of(build_backbone, name)\n"
        "path = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(default.url))\n"
        "os.makedirs(os.path.dirname(path))\n"
        "torch.manual_seed(0)\n"
        "state = torchvision.models.get_model(name, weights=None).state_dict()\n"
        "torch.save(state, path)\n"
        "network, _ = backbones._create_network(name)\n"
        "backbones._load_into(network, name, None)\n"
        "report(error=error, path=hub_weights_file(name),\n"
        "       equal=equal_states(network.state_dict(), state),\n"
        "       stages=len(build_backbone(name).stages),\n"
        "       detection=error_of(hub_weights_file, 'fasterrcnn_mobilenet_v3_large_fpn'))\n",
        tmp_path, HF_HUB_OFFLINE="1")
    expected = str(tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth")
    assert "HF_HUB_OFFLINE=1" in result["error"] and repr(expected) in result["error"]
    assert result["path"] == expected and result["equal"] and result["stages"] == 13
    assert "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth" in result["detection"]


def test_torchvision_downloads_through_the_torch_hub(tmp_path):
    torch.manual_seed(0)
    import torchvision

    state = torchvision.models.get_model("mobilenet_v3_small", weights=None).state_dict()
    torch.save(state, tmp_path / "saved.pth")
    content = (tmp_path / "saved.pth").read_bytes()
    filename = f"mobilenet_v3_small-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    broken = "mobilenet_v3_small-" + hashlib.sha256(b"other").hexdigest()[:8] + ".pth"
    server = LoopbackHub(files={filename: content, broken: content})
    closed = LoopbackHub()
    closed.stop()
    try:
        result, stderr = run_python(
            TORCHVISION
            + "def load_from(url):\n"
            "    default.value.url = url\n"
            "    return error_of(build_backbone, name)\n"
            "base = os.environ['CDN'] + '/models/'\n"
            "refused = load_from(os.environ['CLOSED'] + '/models/' + os.environ['FILE'])\n"
            "wrong_hash = load_from(base + os.environ['BROKEN'])\n"
            "loaded = load_from(base + os.environ['FILE'])\n"
            "network, _ = backbones._create_network(name)\n"
            "backbones._load_into(network, name, None)\n"
            "saved = torch.load(os.environ['SAVED'], weights_only=True)\n"
            "report(refused=refused, wrong_hash=wrong_hash, loaded=loaded,\n"
            "       equal=equal_states(network.state_dict(), saved))\n",
            tmp_path, CDN=server.cdn_url, CLOSED=closed.cdn_url, FILE=filename, BROKEN=broken,
            SAVED=str(tmp_path / "saved.pth"))
        server.fault = "drop"
        dropped, _ = run_python(
            TORCHVISION + "default.value.url = os.environ['URL']\n"
            "report(error=error_of(build_backbone, name))\n",
            tmp_path / "dropped", URL=f"{server.cdn_url}/models/{filename}")
    finally:
        server.stop()
    assert "Could not download" in result["refused"] and filename in result["refused"]
    assert "invalid hash value" in result["wrong_hash"] and broken in result["wrong_hash"]
    assert result["loaded"] is None and result["equal"]
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert cache_files(checkpoints) == [filename]  # no .partial, no broken file
    assert "Could not download" in dropped["error"] and filename in dropped["error"]
    assert cache_files(tmp_path / "dropped" / "torch" / "hub" / "checkpoints") == []
