"""PretrainedFeatureExtractor(memory=): each image's features computed once, results unchanged."""

import io
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
import timm
import torch
from _networks import SmallNet
from _servers import FileServer
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skvision
from skvision import transfer
from skvision.datasets import make_shapes
from skvision.nn.backbones import Backbone
from skvision.transfer import PretrainedFeatureExtractor


def _weights(seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return timm.create_model("test_efficientnet", pretrained=False).state_dict()


WEIGHTS = _weights(0)


def _extractor(**params):
    # A tiny network with given weights (a state dict: its hash is its identity,
    # so a warm cache needs no network at all).
    return PretrainedFeatureExtractor(**{
        "backbone": "test_efficientnet", "weights": WEIGHTS, "image_size": 32, "device": "cpu",
        **params})


@pytest.fixture
def data():
    return make_shapes(60, image_size=16, random_state=0)


@pytest.fixture
def forwards(monkeypatch):
    """How many images the network has run on (a list: one entry per batch)."""
    seen = []
    pool = Backbone.pool
    monkeypatch.setattr(Backbone, "pool", lambda self, x, p="auto": seen.append(len(x)) or pool(
        self, x, p))
    return seen


def _entries(root):
    return sorted(path for path in Path(root).rglob("output.pkl"))


def test_search_scores_are_identical_and_each_image_is_computed_once(tmp_path, data, forwards):
    X, y = data

    def search(memory):
        pipe = make_pipeline(_extractor(memory=memory), StandardScaler(),
                             LogisticRegression(max_iter=200))
        return GridSearchCV(pipe, {"logisticregression__C": [0.01, 0.1]}, cv=3).fit(X, y)

    plain = search(None)
    forwards.clear()
    cold = search(tmp_path)
    # Fold 1 reads every image (its training and test sets); nothing after it.
    assert sum(forwards) == len(X)
    # Folds 2 and 3 and the refit read a warm cache: the scores of both.
    scores = [key for key in plain.cv_results_ if key.endswith("test_score")]
    assert len(set(plain.cv_results_["mean_test_score"])) > 1  # the grid matters
    for key in scores:
        np.testing.assert_array_equal(cold.cv_results_[key], plain.cv_results_[key])
    # One entry per image, plus the model's facts.
    assert len(_entries(tmp_path)) == len(X) + 1


def test_misses_are_computed_as_without_cache_and_hits_return_what_was_stored(tmp_path, data):
    X = data[0][:20]
    # batch_size=8 leaves a batch of one image (9 = 8 + 1).
    plain = _extractor(batch_size=8).fit(X)
    cached = _extractor(batch_size=8, memory=tmp_path).fit(X)
    first = cached.transform(X[:9])  # all miss: the batches plain runs
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, plain.transform(X[:9]))
    every = cached.transform(X)  # 9 hits, then the misses in plain's batches
    np.testing.assert_array_equal(every[:9], first)
    np.testing.assert_array_equal(every[9:], plain.transform(X[9:]))
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(cached.transform(X[order]), every[order])
    # Against features computed in other batches: the last bits at most.
    np.testing.assert_allclose(every, plain.transform(X), rtol=1e-5, atol=1e-7)


def test_a_warm_cache_neither_builds_nor_runs_the_network(tmp_path, data, forwards, monkeypatch):
    X, _ = data
    expected = _extractor(memory=tmp_path).fit_transform(X)
    forwards.clear()

    def no_network(*args, **kwargs):
        raise AssertionError("the network was built")

    monkeypatch.setattr(transfer, "build_backbone", no_network)
    # A joblib.Memory of the same directory finds the same entries.
    memory = joblib.Memory(tmp_path, verbose=0)
    extractor = _extractor(memory=memory, batch_size=7, verbose=0).fit(X)
    np.testing.assert_array_equal(extractor.transform(X[::-1]), expected[::-1])
    assert forwards == [] and "backbone_" not in vars(extractor)
    assert extractor.n_features_out_ == expected.shape[1]


@pytest.mark.parametrize("change", [
    {"layer": -2}, {"image_size": 24}, {"pooling": "max"}, {"weights": _weights(1)},
], ids=["layer", "image_size", "pooling", "weights"])
def test_whatever_changes_the_features_misses(tmp_path, data, forwards, change):
    X = data[0][:6]
    _extractor(memory=tmp_path).fit_transform(X)
    forwards.clear()
    features = _extractor(memory=tmp_path, **change).fit_transform(X)
    assert sum(forwards) == len(X)
    np.testing.assert_array_equal(features, _extractor(**change).fit_transform(X))


def test_precision_and_device_are_in_the_key(tmp_path):
    # Resolved at each transform ("auto" on the machine that runs); running
    # bfloat16 on a CPU without its instructions is slow, so the key is read.
    from skvision._feature_cache import FeatureCache, as_memory

    cache = FeatureCache(as_memory(tmp_path), "0" * 32)
    directories = {cache.for_run(precision, "cpu").directory for precision in ("32", "bf16")}
    directories.add(cache.for_run("32", "meta").directory)
    assert len(directories) == 3


def test_a_user_network_is_keyed_by_its_state(tmp_path, data, forwards):
    X, _ = data
    X = X[:10]
    network = SmallNet(4)
    first = PretrainedFeatureExtractor(backbone=network, image_size=16, memory=tmp_path).fit(X)
    first.transform(X)
    forwards.clear()
    PretrainedFeatureExtractor(backbone=network, image_size=16, memory=tmp_path).fit_transform(X)
    assert forwards == []
    with torch.no_grad():
        network.body[0].weight.mul_(2)
    changed = PretrainedFeatureExtractor(backbone=network, image_size=16, memory=tmp_path)
    assert not np.array_equal(changed.fit_transform(X), first.transform(X))
    assert sum(forwards) == len(X)
    # A class draws its weights at each fit: keyed by what it drew.
    torch.manual_seed(0)
    drawn = PretrainedFeatureExtractor(backbone=SmallNet, image_size=16,
                                       memory=tmp_path).fit_transform(X)
    torch.manual_seed(0)
    np.testing.assert_array_equal(
        PretrainedFeatureExtractor(backbone=SmallNet, image_size=16).fit_transform(X), drawn)


def test_files_are_keyed_by_their_bytes_and_apart_from_arrays(tmp_path, data, forwards):
    X, _ = data
    X = X[:8]
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for index, image in enumerate(X):
        paths.append(str(folder / f"{index}.png"))
        Image.fromarray(image).save(paths[-1])
    cache = tmp_path / "cache"
    from_files = _extractor(memory=cache).fit(paths).transform(paths)
    np.testing.assert_array_equal(from_files, _extractor().fit(paths).transform(paths))
    forwards.clear()
    # The same bytes under other names hit.
    moved = [path.replace(".png", "-copy.png") for path in paths]
    for source, target in zip(paths, moved):
        Path(target).write_bytes(Path(source).read_bytes())
    np.testing.assert_array_equal(_extractor(memory=cache).fit(moved).transform(moved),
                                  from_files)
    assert forwards == []
    # The same pixels in an array are another input (resized by the network,
    # not by the decoder): their own entries, as without a cache.
    from_array = _extractor(memory=cache).fit_transform(X)
    assert sum(forwards) == len(X)
    np.testing.assert_array_equal(from_array, _extractor().fit_transform(X))
    # Other bytes at the same path miss.
    Image.fromarray(X[0][::-1]).save(moved[0])
    forwards.clear()
    _extractor(memory=cache).fit(moved).transform(moved)
    assert sum(forwards) == 1 or forwards == [2]  # one image (run twice, never alone)


@pytest.mark.parametrize("etag", [True, False], ids=["etag", "bytes"])
def test_urls_are_keyed_by_their_version_or_their_bytes(tmp_path, data, forwards, etag):
    X, _ = data
    X = X[:6]
    def png(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()

    files = {f"/{index}.png": png(image) for index, image in enumerate(X)}
    with FileServer(files) as server:
        if etag:
            server.etags = {path: f'"v1-{path}"' for path in files}
        urls = [server.url + path for path in files]
        expected = _extractor().fit(urls).transform(urls)
        cached = _extractor(memory=tmp_path).fit(urls)
        np.testing.assert_array_equal(cached.transform(urls), expected)
        forwards.clear()
        np.testing.assert_array_equal(cached.transform(urls), expected)
        assert forwards == []
        # Another version of one object misses.
        server.files["/0.png"] = png(X[0][::-1])
        if etag:
            server.etags["/0.png"] = '"v2"'
        changed = cached.transform(urls)
        assert forwards == [2]  # the one image (run twice, never alone)
        np.testing.assert_array_equal(changed[1:], expected[1:])
        assert not np.array_equal(changed[0], expected[0])


def test_writers_of_one_cache_agree_and_leave_no_temporary_files(tmp_path, data):
    X, _ = data
    X = X[:20]
    # Two writers of the same entries at once. Threads, not processes, to keep
    # the test fast (a process imports torch): the writes are the same temporary
    # file + os.replace, whose names are unique across processes and machines.
    results = joblib.Parallel(n_jobs=2, backend="threading")(
        joblib.delayed(lambda: _extractor(memory=tmp_path).fit_transform(X))()
        for _ in range(2))
    expected = _extractor().fit_transform(X)
    for features in results:
        np.testing.assert_array_equal(features, expected)
    np.testing.assert_array_equal(_extractor(memory=tmp_path).fit_transform(X), expected)
    files = [path for path in tmp_path.rglob("*") if path.is_file() and path.name != ".gitignore"]
    assert files and all(path.name == "output.pkl" for path in files)
    assert len(files) == len(X) + 1
    # Bounded by joblib's own clean-up: the least recently used images go first.
    joblib.Memory(tmp_path, verbose=0).reduce_size(bytes_limit=5 * files[0].stat().st_size)
    assert len(_entries(tmp_path)) <= 5
    np.testing.assert_allclose(_extractor(memory=tmp_path).fit_transform(X), expected,
                               rtol=1e-5, atol=1e-7)  # recomputed in other batches


@pytest.mark.parametrize("memory", [3, object(), ["cache"]])
def test_a_bad_memory_is_refused_at_fit(memory, data):
    X, _ = data
    extractor = _extractor(memory=memory)  # __init__ only stores it
    with pytest.raises(ValueError, match=(
            r"The 'memory' parameter of PretrainedFeatureExtractor must be None, a path or "
            r"a joblib.Memory\. Got .* instead\.")):
        extractor.fit(X)


def test_a_memory_without_location_caches_nothing(tmp_path, data, forwards):
    X, _ = data
    extractor = _extractor(memory=joblib.Memory(None)).fit(X[:6])
    extractor.transform(X[:6])
    extractor.transform(X[:6])
    assert sum(forwards) == 12


def test_clone_pickle_and_save_with_memory(tmp_path, data):
    X, _ = data
    X = X[:10]
    memory = joblib.Memory(tmp_path / "cache", verbose=0)
    extractor = _extractor(memory=memory)
    assert clone(extractor).memory.location == memory.location
    expected = extractor.fit_transform(X)
    warm = _extractor(memory=memory).fit(X)
    assert "backbone_" not in vars(warm)
    # A fitted extractor travels with its network, built for it.
    restored = pickle.loads(pickle.dumps(warm))
    assert "backbone_" in vars(restored) and restored.memory.location == memory.location
    np.testing.assert_array_equal(restored.transform(X), expected)
    # A saved model does not write where its file says: loaded with memory=None.
    skvision.save(_extractor(memory=memory).fit(X), tmp_path / "model.skv")
    with pytest.warns(UserWarning, match="memory"):
        loaded = skvision.load(tmp_path / "model.skv")
    assert loaded.memory is None
    np.testing.assert_array_equal(loaded.transform(X), expected)


def test_weights_changed_after_fit_are_refused(tmp_path, data):
    X, _ = data
    X = X[:4]
    path = tmp_path / "weights.pth"
    torch.save(WEIGHTS, path)
    _extractor(weights=path, memory=tmp_path / "cache").fit(X)  # the model's facts kept
    extractor = _extractor(weights=path, memory=tmp_path / "cache").fit(X)  # nothing built
    torch.save(_weights(1), path)
    with pytest.raises(RuntimeError, match="changed since fit"):
        extractor.transform(X)
