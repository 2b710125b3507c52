"""skvision.mlflow: the MLflow flavor (no pickle, trust from the caller only), the pyfunc's
requests and outputs, tracking a fit with MlflowLogger, and serving over REST.

Every test uses a local SQLite store in a temporary folder; nothing reaches
the network. The tests marked ``serving`` start other processes (a fresh
interpreter, ``mlflow models serve`` on loopback): `make test-serving`, a CI
step of its own.
"""

import base64
import importlib
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

pytest.importorskip("mlflow")
import mlflow
import mlflow.pyfunc
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import skvision
import skvision.mlflow
from skvision import CNNClassifier, FineTunedClassifier
from skvision.datasets import load_digit_images, make_shapes
from skvision.mlflow import MlflowLogger
from skvision.preprocessing import ImageFlattener

LOGGER = "skvision.mlflow.MlflowLogger"


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _base64_frame(images):
    return pd.DataFrame({"image": [base64.b64encode(_png(image)).decode() for image in images]})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A local file store, for this module only (a new SQLite store's migrations take seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    previous, allowed = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.set_tracking_uri((folder / "mlruns").as_uri())
    yield folder
    mlflow.set_tracking_uri(previous)
    if allowed is None:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE")
    else:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = allowed


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X[:300], y[:300]


@pytest.fixture(scope="module")
def shapes():
    X, y = make_shapes(12, image_size=16, random_state=0)  # uint8 (n, 16, 16, 3)
    return X, y


@pytest.fixture(scope="module")
def models(store, digits, shapes):
    """The two models of the issue, each logged with one kind of input example."""
    X, y = digits
    pipeline = make_pipeline(ImageFlattener(), LogisticRegression(max_iter=300)).fit(X, y)
    Xs, ys = shapes
    tuned = FineTunedClassifier(backbone="test_efficientnet", weights=False, freeze="none",
                                image_size=16, epochs=1, batch_size=8, device="cpu",
                                random_state=0).fit(Xs, ys)
    with mlflow.start_run():
        pipeline_info = skvision.mlflow.log_model(pipeline, "pipeline", input_example=X[:2])
        tuned_info = skvision.mlflow.log_model(tuned, "tuned",
                                               input_example=_base64_frame(Xs[:2]))
    return {"pipeline": (pipeline, pipeline_info), "tuned": (tuned, tuned_info)}


def _download(info, tmp_path):
    return mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri,
                                               dst_path=str(tmp_path))


def _is_pickle(path):
    with open(path, "rb") as file:
        return file.read(1) == b"\x80"


def test_logged_models_hold_no_pickle_and_list_both_flavors(models, tmp_path):
    for key, (_, info) in models.items():
        folder = _download(info, tmp_path / key)
        files = [os.path.join(root, name) for root, _, names in os.walk(folder)
                 for name in names]
        assert not [path for path in files if path.endswith((".pkl", ".pickle", ".pth", ".pt"))
                    or _is_pickle(path)]
        with open(os.path.join(folder, "MLmodel")) as file:
            configuration = yaml.safe_load(file)
        assert {"skvision", "python_function"} <= set(configuration["flavors"])
        assert configuration["flavors"]["python_function"]["loader_module"] == "skvision.mlflow"
        with open(os.path.join(folder, "requirements.txt")) as file:
            requirements = [line.split("==")[0] for line in file.read().split()]
        assert {"scikit-vision", "torch", "timm", "scikit-learn", "mlflow"} <= set(requirements)
        assert not {"pytest", "hypothesis", "moto"} & set(requirements)
        skvision.load(os.path.join(folder, "model.skv"))  # skvision's own file


def test_signatures_are_inferred_as_mlflow_does(models):
    pipeline_signature = models["pipeline"][1].signature
    spec = pipeline_signature.inputs.inputs[0]
    assert spec.shape == (-1, 8, 8) and spec.type == np.dtype("float32")
    tuned_signature = models["tuned"][1].signature
    assert tuned_signature.inputs.input_names() == ["image"]
    assert tuned_signature.inputs.inputs[0].type.name == "string"


def test_pyfunc_predicts_as_the_model_on_arrays_and_encoded_images(models, digits, shapes):
    X, _ = digits
    pipeline, info = models["pipeline"]
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(X[:40]), pipeline.predict(X[:40]))
    Xs, _ = shapes
    tuned, info = models["tuned"]
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    expected = tuned.predict(Xs)
    np.testing.assert_array_equal(loaded.predict(_base64_frame(Xs)), expected)
    # MLflow's binary column (what it decodes base64 to over REST), and a 1-D array.
    binary = pd.DataFrame({"image": [_png(image) for image in Xs]})
    assert loaded.get_raw_model() is not None
    np.testing.assert_array_equal(
        skvision.mlflow._SkvisionPyfunc(loaded.get_raw_model(), "predict", False).predict(binary),
        expected)
    np.testing.assert_array_equal(skvision.mlflow._SkvisionPyfunc(
        loaded.get_raw_model(), "predict", False).predict(_base64_frame(Xs)["image"].to_numpy()),
        expected)


def test_encoded_gray_images_reach_a_pipeline_as_its_pixels(models, digits, tmp_path):
    # uint8 files of the digits: the pipeline scales them to [0, 1] as it does uint8 arrays.
    X, _ = digits
    pipeline, _ = models["pipeline"]
    pixels = np.round(X[:30] * 255).astype(np.uint8)
    wrapper = skvision.mlflow._SkvisionPyfunc(pipeline, "predict", False)
    np.testing.assert_array_equal(wrapper.predict(_base64_frame(pixels)),
                                  pipeline.predict(pixels))
    # Colour files given to a gray model: converted by luma, as files are.
    colour = np.repeat(pixels[..., None], 3, axis=-1)
    np.testing.assert_array_equal(wrapper.predict(_base64_frame(colour)),
                                  pipeline.predict(pixels / 255))


def test_predict_proba_is_a_frame_of_the_class_names(digits, tmp_path):
    X, y = digits
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                       "nine"])[y]
    pipeline = make_pipeline(ImageFlattener(), LogisticRegression(max_iter=300)).fit(X, labels)
    path = tmp_path / "proba"
    skvision.mlflow.save_model(pipeline, path, pyfunc_predict_fn="predict_proba",
                               signature=False)
    frame = mlflow.pyfunc.load_model(str(path)).predict(X[:5])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(pipeline.classes_)
    np.testing.assert_array_equal(frame.to_numpy(), pipeline.predict_proba(X[:5]))
    with pytest.raises(ValueError, match="pyfunc_predict_fn"):
        skvision.mlflow.save_model(pipeline, tmp_path / "bad", pyfunc_predict_fn="fit")


def test_detections_and_masks_come_out_as_mlflow_serves_them(tmp_path):
    """The detector's boxes as one row per box, the segmenter's masks as an array."""
    from skvision.detection import FasterRCNNDetector
    from skvision.segmentation import UNetSegmenter

    X, boxes = make_shapes(8, image_size=32, task="detection", max_objects=2, random_state=0)
    detector = FasterRCNNDetector(epochs=1, batch_size=8, device="cpu",
                                  random_state=0).fit(X, boxes)
    skvision.mlflow.save_model(detector, tmp_path / "detector", signature=False)
    frame = mlflow.pyfunc.load_model(str(tmp_path / "detector")).predict(X[:3])
    found = detector.predict(X[:3])
    assert len(frame) == sum(len(f["labels"]) for f in found) > 0
    assert frame["label"].tolist() == [label for f in found for label in f["labels"]]
    assert list(frame.columns) == ["image", "x_min", "y_min", "x_max", "y_max", "label",
                                   "score"]
    assert frame["image"].tolist() == [i for i, f in enumerate(found) for _ in f["labels"]]
    np.testing.assert_allclose(frame[["x_min", "y_min", "x_max", "y_max"]].to_numpy(),
                               np.concatenate([f["boxes"] for f in found]).reshape(-1, 4),
                               rtol=1e-6)

    X, masks = make_shapes(8, image_size=16, task="segmentation", random_state=0)
    segmenter = UNetSegmenter(depth=2, base_filters=4, epochs=1, batch_size=8, device="cpu",
                              random_state=0).fit(X, masks)
    skvision.mlflow.save_model(segmenter, tmp_path / "segmenter", signature=False)
    predicted = mlflow.pyfunc.load_model(str(tmp_path / "segmenter")).predict(X[:3])
    np.testing.assert_array_equal(predicted, segmenter.predict(X[:3]))


def test_paths_and_urls_are_read_only_when_read_paths_is_on(models, shapes, tmp_path):
    from _servers import FileServer

    Xs, _ = shapes
    tuned, info = models["tuned"]
    image = tmp_path / "shape.png"
    image.write_bytes(_png(Xs[0]))
    default = mlflow.pyfunc.load_model(info.model_uri)
    with FileServer({"/shape.png": _png(Xs[1])}) as server:
        url = f"{server.url}/shape.png"
        for request in ("/etc/hostname", str(image), url):
            with pytest.raises(ValueError, match="read_paths"):
                default.predict(pd.DataFrame({"image": [request]}))
        assert server.requests == []  # the URL was never fetched
        reading = mlflow.pyfunc.load_model(info.model_uri, model_config={"read_paths": True})
        np.testing.assert_array_equal(
            reading.predict(pd.DataFrame({"image": [str(image), url]})), tuned.predict(Xs[:2]))
        assert server.requests
    with pytest.raises(ValueError, match="hostname"):  # read: it is no image
        reading.predict(pd.DataFrame({"image": ["/etc/hostname"]}))


def test_a_pickle_in_place_of_the_model_file_is_refused(models, tmp_path):
    folder = _download(models["pipeline"][1], tmp_path)
    with open(os.path.join(folder, "model.skv"), "wb") as file:
        pickle.dump({"payload": os.system}, file)
    with pytest.raises(skvision.ModelFileError):
        skvision.load(os.path.join(folder, "model.skv"))
    with pytest.raises(skvision.ModelFileError):
        skvision.mlflow.load_model(folder)
    with pytest.raises(skvision.ModelFileError):
        mlflow.pyfunc.load_model(folder)


def _edit_mlmodel(folder, edit):
    path = os.path.join(folder, "MLmodel")
    with open(path) as file:
        configuration = yaml.safe_load(file)
    edit(configuration["flavors"])
    with open(path, "w") as file:
        yaml.safe_dump(configuration, file)


@pytest.fixture(scope="module")
def tracked(store, digits):
    """A CNN fitted with MlflowLogger in a run, and logged into it."""
    X, y = digits
    clf = CNNClassifier(filters=(4,), epochs=3, lr=0.01, callbacks=[MlflowLogger()],
                        random_state=0)
    with mlflow.start_run() as run:
        clf.fit(X[:64], y[:64])
        still_active = mlflow.active_run() is not None
        info = skvision.mlflow.log_model(clf, "cnn", signature=False)
    return clf, run, info, still_active


def test_nothing_in_the_mlmodel_widens_trust(tracked, digits, tmp_path):
    X, _ = digits
    clf, _, info, _ = tracked
    folder = _download(info, tmp_path)

    def widen(flavors):
        flavors["python_function"]["config"] = {"trusted": [LOGGER, "os.system"],
                                                "read_paths": True}
        flavors["skvision"]["trusted"] = [LOGGER, "os.system"]
        flavors["skvision"]["skops_trusted_types"] = [LOGGER, "os.system"]

    _edit_mlmodel(folder, widen)
    with pytest.raises(skvision.ModelFileError, match="MlflowLogger"):
        skvision.mlflow.load_model(folder)
    with pytest.raises(skvision.ModelFileError, match="MlflowLogger"):
        mlflow.pyfunc.load_model(folder)
    # The caller's trust loads it; the file's read_paths still does not count.
    model = skvision.mlflow.load_model(folder, trusted=[LOGGER])
    np.testing.assert_array_equal(model.predict(X[:10]), clf.predict(X[:10]))
    loaded = mlflow.pyfunc.load_model(folder, model_config={"trusted": [LOGGER]})
    np.testing.assert_array_equal(loaded.predict(X[:10]), clf.predict(X[:10]))
    with pytest.raises(ValueError, match="read_paths"):
        loaded.predict(pd.DataFrame({"image": ["/etc/hostname"]}))
    # And the model file is named in the model's folder only.
    _edit_mlmodel(folder, lambda flavors: flavors["skvision"].update(model_path="../x.skv"))
    with pytest.raises(ValueError, match="not a file of the model's directory"):
        skvision.mlflow.load_model(folder, trusted=[LOGGER])


def test_mlflow_logger_records_params_and_one_row_per_epoch(tracked):
    clf, run, info, still_active = tracked
    assert still_active  # the callback does not end the run
    client = mlflow.MlflowClient()
    data = client.get_run(run.info.run_id).data
    assert data.params["epochs"] == "3" and data.params["lr"] == "0.01"
    for metric in ("train_loss", "train_acc", "lr", "dur"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert sorted(entry.step for entry in history) == [1, 2, 3], metric
    losses = [entry.value for entry in sorted(
        client.get_metric_history(run.info.run_id, "train_loss"), key=lambda e: e.step)]
    np.testing.assert_allclose(losses, clf.history_["train_loss"])
    artifacts = [entry.path for entry in client.list_artifacts(run.info.run_id)]
    assert not [path for path in artifacts if path.endswith((".pt", ".pth", ".pkl"))]
    with pytest.raises(skvision.ModelFileError, match="MlflowLogger"):
        skvision.mlflow.load_model(info.model_uri)
    skvision.mlflow.load_model(info.model_uri, trusted=[LOGGER])


def test_mlflow_logger_without_a_run_says_so(digits):
    X, y = digits
    assert mlflow.active_run() is None
    clf = CNNClassifier(filters=(4,), epochs=1, callbacks=[MlflowLogger()], random_state=0)
    with pytest.raises(RuntimeError, match="start_run"):
        clf.fit(X[:32], y[:32])


def test_mlflow_private_api_exists():
    for name in skvision.mlflow.MLFLOW_PRIVATE_API:
        module, _, attribute = name.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), name


def test_a_missing_mlflow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match=r"scikit-vision\[mlflow\]"):
        skvision.mlflow.load_model("unused")


# --------------------------------------------------------------------------
# Other processes: a fresh interpreter, and `mlflow models serve` on loopback.


def _python(code, env=None):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.serving
def test_a_fresh_process_predicts_exactly_as_the_original(models, digits, shapes, tmp_path):
    X, _ = digits
    Xs, _ = shapes
    np.save(tmp_path / "X.npy", X[:50])
    _base64_frame(Xs).to_json(tmp_path / "frame.json", orient="split")
    code = f"""
import numpy as np, pandas as pd, mlflow, mlflow.pyfunc
mlflow.set_tracking_uri({mlflow.get_tracking_uri()!r})
pipeline = mlflow.pyfunc.load_model({models["pipeline"][1].model_uri!r})
np.save({str(tmp_path / "pipeline.npy")!r}, pipeline.predict(np.load({str(tmp_path / "X.npy")!r})))
tuned = mlflow.pyfunc.load_model({models["tuned"][1].model_uri!r})
frame = pd.read_json({str(tmp_path / "frame.json")!r}, orient="split")
np.save({str(tmp_path / "tuned.npy")!r}, np.asarray(tuned.predict(frame), dtype=str))
"""
    _python(code)
    np.testing.assert_array_equal(np.load(tmp_path / "pipeline.npy"),
                                  models["pipeline"][0].predict(X[:50]))
    np.testing.assert_array_equal(np.load(tmp_path / "tuned.npy"),
                                  models["tuned"][0].predict(Xs).astype(str))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def serve(model_uri, port, env=None):
    """``mlflow models serve`` on loopback; returns the process and its start time (s)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    while time.perf_counter() - start < 240:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode()[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("the model server did not answer within 240 s")


@pytest.mark.serving
def test_served_models_answer_as_the_logged_ones(models, digits, shapes, tmp_path):
    X, _ = digits
    Xs, _ = shapes
    # The server runs `uvicorn` by name: this interpreter's scripts first on PATH.
    env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow.get_tracking_uri(),
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    ports = _free_port(), _free_port()
    processes = []
    try:
        for key, port in zip(("pipeline", "tuned"), ports):
            processes.append(serve(models[key][1].model_uri, port, env)[0])
        status, answer = _post(ports[0], {"inputs": X[:32].tolist()})
        assert status == 200, answer
        np.testing.assert_array_equal(answer["predictions"],
                                      models["pipeline"][0].predict(X[:32]))
        frame = _base64_frame(Xs)
        status, answer = _post(ports[1], {"dataframe_split": frame.to_dict(orient="split")})
        assert status == 200, answer
        assert answer["predictions"] == models["tuned"][0].predict(Xs).tolist()
        # A path in a request: refused by a server started without read_paths.
        status, answer = _post(ports[1], {"dataframe_split": {
            "columns": ["image"], "data": [["/etc/hostname"]]}})
        assert status >= 400 and "read_paths" in json.dumps(answer)
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
