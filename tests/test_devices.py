"""Devices: mixed precision (on any device), the CUDA paths (marked ``gpu``),
GPU models that load on CPU-only machines, and training through accelerate."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skvision import CNNClassifier, PretrainedFeatureExtractor, UNetSegmenter
from skvision.datasets import make_shapes


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0)


def _conv_output_dtypes(clf, X, y):
    """Fit ``clf`` and record the dtype of its first convolution's outputs."""
    dtypes = set()

    def record(module, inputs, output):
        dtypes.add(output.dtype)

    clf.fit(X[:20], y[:20])  # builds the network
    first_conv = next(m for m in clf.module_.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(record)
    clf.set_params(warm_start=True).fit(X, y)
    return dtypes


@pytest.mark.parametrize("precision, dtype", [
    ("32", torch.float32), ("bf16", torch.bfloat16), ("16-mixed", torch.float16),
])
def test_precision_trains_in_its_arithmetic(digits_split, precision, dtype):
    X_train, X_test, y_train, y_test = digits_split
    # Two stages: 0.967-0.969 held out in each arithmetic, at a fifth of the
    # default network's cost where bfloat16 and float16 are emulated.
    clf = CNNClassifier(filters=(16, 32), epochs=3, precision=precision, device="cpu",
                        random_state=0)
    assert _conv_output_dtypes(clf, X_train, y_train) == {dtype}
    assert clf.score(X_test, y_test) > 0.95
    proba = clf.predict_proba(X_test)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    # Only float16 needs its gradients scaled.
    assert (getattr(clf.net_, "grad_scaler_", None) is not None) == (precision == "16-mixed")


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_precision_is_bf16_on_cpus_with_native_bfloat16(digits_split, monkeypatch,
                                                             native_bf16):
    from skvision import _torch

    monkeypatch.setattr(_torch, "cpu_has_native_bf16", lambda: native_bf16)
    X_train, X_test, y_train, y_test = digits_split
    clf = CNNClassifier(epochs=2, device="cpu", random_state=0)
    assert clf.precision == "auto"
    expected = "bf16" if native_bf16 else "32"
    assert _conv_output_dtypes(clf, X_train, y_train) == {
        torch.bfloat16 if native_bf16 else torch.float32}
    assert clf.net_.precision == expected
    assert clf.score(X_test, y_test) > 0.9
    # "auto" never picks bfloat16 on a GPU (measured no faster) or float16.
    assert _torch.resolve_precision("auto", "cuda") == "32"
    assert _torch.resolve_precision("bf16", "cuda") == "bf16"


def test_native_bf16_detection_reads_the_cpu_flags(monkeypatch):
    from skvision._torch import cpu_has_native_bf16

    monkeypatch.delenv("SKVISION_BF16", raising=False)
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        flags = ""
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_mixed_precision_model_pickles(digits_split):
    X_train, X_test, y_train, _ = digits_split
    clf = CNNClassifier(filters=(16, 32), epochs=1, precision="16-mixed", device="cpu",
                        random_state=0)
    clf.fit(X_train, y_train)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X_test), clf.predict(X_test))
    restored.partial_fit(X_train, y_train)  # the grad scaler came back usable


def test_a_bf16_model_restored_where_bf16_is_emulated_predicts_in_float32(
        digits_split, tmp_path, monkeypatch):
    import skvision

    X_train, X_test, y_train, _ = (part / 16 if part.ndim == 2 else part
                                   for part in digits_split)
    monkeypatch.setenv("SKVISION_BF16", "1")  # trained where bfloat16 is native
    clf = CNNClassifier(epochs=1, device="cpu", random_state=0).fit(X_train[:200],
                                                                   y_train[:200])
    assert clf.precision_ == "bf16"
    skvision.save(clf, tmp_path / "model.skv")
    assert skvision.load(tmp_path / "model.skv").precision_ == "bf16"

    monkeypatch.setenv("SKVISION_BF16", "0")  # restored where it would be emulated
    with pytest.warns(UserWarning, match=r"trained in bfloat16.*float32 here"):
        loaded = skvision.load(tmp_path / "model.skv")
    with pytest.warns(UserWarning, match=r"trained in bfloat16.*float32 here"):
        unpickled = pickle.loads(pickle.dumps(clf))
    for restored in (loaded, unpickled):
        assert restored.precision_ == restored.net_.precision == "32"
    clf.precision_ = "32"  # the same network, in float32
    expected = clf.predict_proba(X_test)
    np.testing.assert_allclose(loaded.predict_proba(X_test), expected, atol=1e-6)
    np.testing.assert_allclose(unpickled.predict_proba(X_test), expected, atol=1e-6)


def test_bf16_features_match_float32():
    X, _ = make_shapes(16, image_size=32, random_state=0)
    full = PretrainedFeatureExtractor(image_size=64, device="cpu").fit_transform(X)
    half = PretrainedFeatureExtractor(image_size=64, device="cpu", precision="bf16").fit_transform(X)
    assert half.dtype == np.float32
    assert np.corrcoef(full.ravel(), half.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("Estimator", [CNNClassifier, PretrainedFeatureExtractor])
def test_unknown_precision_is_refused(Estimator, digits_split):
    X_train, _, y_train, _ = digits_split
    with pytest.raises(ValueError, match=r"'precision' parameter of \w+ must be one of 'auto', '32', 'bf16', '16-mixed'"):
        Estimator(precision="fp8").fit(X_train[:10], y_train[:10])


def _tensors(obj):
    """Every tensor in ``obj``'s nested dicts, lists and tuples."""
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def _pickled_as_if_on_cuda(obj, tensors, monkeypatch):
    """Pickle ``obj`` with ``tensors`` tagged as CUDA memory, as a GPU fit leaves them."""
    on_gpu = {tensor.untyped_storage().data_ptr() for tensor in tensors}
    registry = torch.serialization._package_registry
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "_package_registry", [
            (0, lambda storage: "cuda:0" if storage.data_ptr() in on_gpu else None, None),
            *registry,
        ])
        return pickle.dumps(obj)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_gpu_pickled_model_loads_on_a_cpu_only_machine(digits_split, monkeypatch, early_stopping):
    X_train, X_test, y_train, _ = digits_split
    clf = CNNClassifier(epochs=2, early_stopping=early_stopping, device="cpu", random_state=0)
    clf.fit(X_train, y_train)
    expected = clf.predict_proba(X_test)
    clf.device_ = clf.net_.device = "cuda"  # what a GPU fit leaves behind
    on_gpu = [*clf.module_.state_dict().values(),
              *(value for state in clf.net_.optimizer_.state.values()
                for value in state.values() if torch.is_tensor(value)),
              # and whatever the callbacks keep on the training device
              *(value for _, callback in clf.net_.callbacks_
                for value in _tensors(vars(callback)))]
    data = _pickled_as_if_on_cuda(clf, on_gpu, monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        # The mock is real: the module pickled alone cannot load here.
        pickle.loads(_pickled_as_if_on_cuda(clf.module_, on_gpu, monkeypatch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skorch's DeviceWarning about the mapping
        restored = pickle.loads(data)
    assert restored.device_ == "cpu" and str(restored.net_.device) == "cpu"
    assert next(restored.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(restored.predict_proba(X_test), expected, atol=1e-6)
    restored.partial_fit(X_train, y_train)  # and trains on, on the CPU
    # The network is written once, not once per reference to it: weights
    # plus AdamW's two moments make three copies' worth, a duplicate four.
    assert len(data) < 3.3 * len(pickle.dumps(clf.module_))


# -- on a CUDA GPU only -------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32", "bf16", "16-mixed"])
def test_cnn_trains_on_cuda(digits_split, precision):
    X_train, X_test, y_train, y_test = digits_split
    clf = CNNClassifier(epochs=5, device="auto", precision=precision, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.device_ == "cuda"
    assert next(clf.module_.parameters()).is_cuda
    assert clf.score(X_test, y_test) > 0.95
    # The same seed gives the same model on the same device, up to cuDNN's
    # nondeterministic kernels.
    again = CNNClassifier(epochs=5, device="cuda", precision=precision, random_state=0)
    agreement = np.mean(again.fit(X_train, y_train).predict(X_test) == clf.predict(X_test))
    assert agreement > 0.98


@pytest.mark.gpu
def test_extractor_on_cuda_matches_cpu(monkeypatch):
    # cuDNN convolutions run in TF32 by default on Ampere and newer GPUs (up to
    # 0.044 from the CPU's features on an H200): compare float32 arithmetic.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    X, _ = make_shapes(32, image_size=32, random_state=0)
    cpu = PretrainedFeatureExtractor(image_size=64, device="cpu").fit_transform(X)
    cuda = PretrainedFeatureExtractor(image_size=64, device="cuda").fit_transform(X)
    np.testing.assert_allclose(cuda, cpu, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
def test_segmenter_fitted_on_cuda_unpickles_and_predicts():
    X, masks = make_shapes(40, image_size=32, task="segmentation", random_state=0)
    seg = UNetSegmenter(depth=2, base_filters=8, epochs=2, device="cuda", random_state=0)
    seg.fit(X, masks)
    restored = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(restored.predict(X), seg.predict(X))


# -- skorch's AccelerateMixin (Hugging Face accelerate), one CPU process ------


def test_accelerated_training_matches_plain_training(digits_split):
    accelerate = pytest.importorskip("accelerate")
    X_train, X_test, y_train, y_test = digits_split
    plain = CNNClassifier(epochs=2, device="cpu", precision="32",
                          random_state=0).fit(X_train, y_train)
    accelerator = accelerate.Accelerator(cpu=True)
    clf = CNNClassifier(epochs=2, random_state=0, accelerator=accelerator).fit(X_train, y_train)
    assert type(clf.net_).__name__ == "AcceleratedNet" and clf.device_ == "cpu"
    # One process: the same batches and steps as without accelerate.
    np.testing.assert_allclose(clf.predict_proba(X_test), plain.predict_proba(X_test), atol=1e-5)
    assert clf.score(X_test, y_test) > 0.95
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X_test), clf.predict(X_test))
    # Further training wraps the network again and goes on from its weights.
    clf.partial_fit(X_train, y_train)
    # Measured 0.948 (one seed); the property is training that goes on, not a seed's score.
    assert len(clf.history_) == 3 and clf.score(X_test, y_test) > 0.9
    with pytest.raises(ValueError, match="set mixed precision on it"):
        CNNClassifier(precision="bf16", accelerator=accelerator).fit(X_train, y_train)
    # The default "auto" leaves the arithmetic to the accelerator.
    assert CNNClassifier(epochs=1, accelerator=accelerator).fit(
        X_train, y_train).net_.precision == "32"


def test_data_parallel_processes_share_each_epoch():
    from skvision._batching import BatchIterator, ImageDataset
    from skvision._data import ArrayImages

    dataset = ImageDataset(ArrayImages(np.zeros((23, 1, 1, 1), np.float32)), torch.arange(23))
    shares = []
    for index in range(3):
        batches = BatchIterator(dataset, batch_size=4, shuffle=True, shard=(index, 3),
                                 generator=torch.Generator().manual_seed(0))
        shares.append(torch.cat([y for _, y in batches]).tolist())
    assert [len(share) for share in shares] == [7, 7, 7]  # in lockstep: 23 // 3 each
    seen = sum(shares, [])
    assert len(set(seen)) == len(seen)  # disjoint
