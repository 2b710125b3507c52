"""Declared parameter constraints: every parameter of every public estimator.

Each parameter is set to values outside its declared constraints (an object
of no accepted type, numbers just outside an interval, an unknown option);
``fit`` (and ``partial_fit``) must raise an error naming that parameter
before reading the data: the data given here is not images at all, so an
error about it would mean the parameters were checked too late.
"""

import inspect

import numpy as np
import pytest

from skvision import CNNClassifier, ImageAugmenter, VisionTransformerClassifier
from skvision._params import InvalidParameterError, invalid_values, validate_params
from skvision.preprocessing import ImageReader
from tests.test_common import INIT_PARAMS

ESTIMATORS = [*INIT_PARAMS, ImageReader]
NOT_IMAGES = "not images"


def _methods(estimator):
    """The calls that must validate parameters first: fit and partial_fit."""
    return [getattr(estimator, name) for name in ("fit", "partial_fit")
            if hasattr(estimator, name)]


@pytest.mark.parametrize("estimator_class", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_constraints_cover_exactly_the_parameters(estimator_class):
    params = estimator_class().get_params(deep=False)
    assert set(estimator_class._parameter_constraints) == set(params)
    # The defaults and the common tests' settings are valid.
    validate_params(estimator_class())
    validate_params(estimator_class(**INIT_PARAMS.get(estimator_class, {})))


@pytest.mark.parametrize("estimator_class", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_init_is_keyword_only(estimator_class):
    parameters = list(inspect.signature(estimator_class.__init__).parameters.values())[1:]
    assert parameters
    # Keyword-only; the fine-tuned models and the extractor also take
    # **backbone_arguments (backbone__<name>=value, as skorch's module__).
    assert all(parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
               for parameter in parameters)
    with pytest.raises(TypeError):
        estimator_class(getattr(estimator_class(), parameters[0].name))


def _cases():
    for estimator_class in ESTIMATORS:
        for name, constraints in estimator_class._parameter_constraints.items():
            yield pytest.param(estimator_class, name, invalid_values(constraints),
                               id=f"{estimator_class.__name__}-{name}")


@pytest.mark.parametrize(("estimator_class", "name", "values"), list(_cases()))
def test_invalid_parameter_fails_before_the_data(estimator_class, name, values):
    assert values, f"no invalid value could be generated for {name}"
    for value in values:
        estimator = estimator_class(**INIT_PARAMS.get(estimator_class, {}))
        estimator.set_params(**{name: value})
        for method in _methods(estimator):
            with pytest.raises(InvalidParameterError,
                               match=rf"The '{name}' parameter of {estimator_class.__name__} "
                                     r"must be .* Got .* instead\."):
                method(NOT_IMAGES, [0, 1])


def test_errors_are_value_and_type_errors():
    with pytest.raises(ValueError, match="'epochs' parameter of CNNClassifier must be an int "
                                         r"in the range \[1, inf\) or 'auto'\. Got 0 instead"):
        CNNClassifier(epochs=0).fit(NOT_IMAGES, [0, 1])
    with pytest.raises(TypeError, match="'filters'"):
        CNNClassifier(filters=(8, "16")).fit(NOT_IMAGES, [0, 1])


def test_nested_augmenter_is_validated():
    with pytest.raises(InvalidParameterError, match="'degrees' parameter of ImageAugmenter"):
        CNNClassifier(augment=ImageAugmenter(degrees=-5)).fit(NOT_IMAGES, [0, 1])


@pytest.mark.parametrize(("params", "message"), [
    (dict(embed_dim=10, n_heads=4), "embed_dim must be divisible by n_heads"),
])
def test_relations_between_parameters(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        VisionTransformerClassifier(**params).fit(NOT_IMAGES, [0, 1])


def test_accelerator_and_precision_relation():
    class FakeAccelerator:
        def prepare(self, *objects):
            return objects

    with pytest.raises(InvalidParameterError, match="set mixed precision on it"):
        CNNClassifier(accelerator=FakeAccelerator(), precision="bf16").fit(NOT_IMAGES, [0, 1])


def test_valid_parameters_reach_the_data():
    # Past the parameters, the data check speaks.
    with pytest.raises(ValueError, match="(?i)image|array|path"):
        CNNClassifier(epochs=1).fit(NOT_IMAGES, [0, 1])


def test_numpy_scalars_and_tuples_as_lists_are_accepted():
    estimator = CNNClassifier(epochs=np.int64(2), lr=np.float32(0.01), filters=[4, 8],
                              dropout=np.float64(0.1))
    validate_params(estimator)


def test_the_callbacks_page_lists_every_reserved_name():
    # docs/user_guide/callbacks.rst tells users which names their callbacks
    # cannot take: exactly the names fit refuses.
    import re
    from pathlib import Path

    from skvision._params import RESERVED_CALLBACK_NAMES

    page = (Path(__file__).resolve().parent.parent / "docs" / "user_guide"
            / "callbacks.rst").read_text()
    rule = page.split("must not be one", 1)[1].split("is refused", 1)[0]
    listed = re.findall(r"``(\w+)``", rule)
    assert sorted(set(listed) - {"checkpoint"}) == sorted(RESERVED_CALLBACK_NAMES)
