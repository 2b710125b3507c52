"""skvision's use of skorch's private API, checked name by name.

``skvision._net`` overrides private skorch methods and reads skorch
internals (all listed in ``SKORCH_PRIVATE_API``). A skorch release that
removes or renames one of them fails here, naming it, before it can break
training quietly.
"""

import numpy as np
import pytest
import torch
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.hf import AccelerateMixin

from skvision._net import SKORCH_PRIVATE_API, AcceleratedNet, Net


def test_the_list_names_every_private_override():
    # Every private method our nets define on top of skorch is in the list.
    ours = {name for cls in (Net, AcceleratedNet) for name in vars(cls)
            if name.startswith("_") and not name.startswith("__")
            and any(hasattr(base, name) for base in (NeuralNet, AccelerateMixin))}
    listed = {name for key, names in SKORCH_PRIVATE_API.items() if "overridden" in key
              for name in names}
    assert ours == listed


@pytest.mark.parametrize("owner, name", [
    (owner, name) for key, names in SKORCH_PRIVATE_API.items() if "methods" in key
    for owner in [key.split()[0]] for name in names])
def test_overridden_private_methods_exist_in_skorch(owner, name):
    cls = {"NeuralNet": NeuralNet, "AccelerateMixin": AccelerateMixin}[owner]
    assert callable(getattr(cls, name, None)), f"skorch's {owner} has no method {name} any more"


@pytest.fixture(scope="module")
def trained_net():
    """A plain skorch net trained two epochs with the callbacks whose internals we read."""
    X = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    y = (X.sum(axis=1) > 2).astype(np.int64)
    net = NeuralNet(
        torch.nn.Linear(4, 2), criterion=torch.nn.CrossEntropyLoss, max_epochs=2, lr=0.1,
        batch_size=8, verbose=0,
        callbacks=[("early_stopping", EarlyStopping(patience=5, load_best=True)),
                   ("lr_schedule", LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1))],
    )
    return net.fit(X, y)


def test_internal_attributes_skvision_reads_exist(trained_net):
    callbacks = dict(trained_net.callbacks_)
    owners = {
        "NeuralNet attributes read": trained_net,
        "EarlyStopping attributes read": callbacks["early_stopping"],
        "LRScheduler attributes read": callbacks["lr_schedule"],
        "PassthroughScoring attributes read": callbacks["train_loss"],
    }
    for key, owner in owners.items():
        for name in SKORCH_PRIVATE_API[key]:
            assert hasattr(owner, name), f"{key}: skorch no longer sets {name}"
    assert isinstance(trained_net._optimizers, list) and "optimizer" in trained_net._optimizers
    for key in SKORCH_PRIVATE_API["History keys read"]:
        assert key in trained_net.history[-1], f"skorch's history rows have no {key!r} any more"


def test_accelerate_mixin_internals_exist():
    accelerate = pytest.importorskip("accelerate")

    # Our own accelerated net, as the estimators build it (one CPU process).
    net = AcceleratedNet(torch.nn.Linear(4, 2), criterion=torch.nn.CrossEntropyLoss,
                         accelerator=accelerate.Accelerator(cpu=True)).initialize()
    for name in SKORCH_PRIVATE_API["AccelerateMixin attributes read"]:
        assert hasattr(net, name), f"skorch's AccelerateMixin no longer sets {name}"
