"""Training batches: the dataset, the batch iterator and training-time augmentation.

The training core reads its batches here, from the one data layer
(``skvision._data``): a whole batch is sliced or decoded at once and moved to
the training device, where the estimator's ``augment`` runs. Inference reads
through ``skvision._torch.predict_batches`` instead.
"""

from typing import NamedTuple

import torch

from ._data import read_batches
from ._torch import channels_last


class ImageDataset(torch.utils.data.Dataset):
    """An image set (see ``skvision._data``), its targets as one tensor or list,
    and the images' weights (a float32 tensor, or None for unweighted)."""

    def __init__(self, images, y, weights=None):
        self.images, self.y, self.weights = images, y, weights

    def __len__(self):
        return len(self.images)

    def subset(self, positions):
        index = torch.as_tensor(positions)
        weights = None if self.weights is None else self.weights[index]
        return ImageDataset(self.images.subset(positions), self.y[index], weights)


class WeightedTargets(NamedTuple):
    """The targets of a weighted batch and one weight per image, as the loss takes them."""

    targets: torch.Tensor
    weights: torch.Tensor


def weighted_mean_loss(loss, weights=None):
    """Reduce an unreduced loss (one value per image, or per image and output) to a scalar.

    With ``weights`` the batch's loss is the weighted mean over its images,
    ``sum(w * loss) / sum(w)``, as torch's class-weighted cross-entropy: the
    scale of the weights does not matter, a weight of 0 leaves an image out.
    """
    per_image = loss.reshape(len(loss), -1).mean(dim=1) if loss.dim() > 1 else loss
    if weights is None:
        return per_image.mean()
    weights = weights.to(per_image.device, per_image.dtype)
    return (per_image * weights).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)


class BatchIterator:
    """Yield ``(X[idx], y[idx])`` mini-batches read from the data layer.

    A whole batch is read at once (a slice of the array, or its files
    decoded by a pool of threads while the previous batch trains) instead
    of the per-sample ``__getitem__`` and ``default_collate`` of a
    ``DataLoader``, which for small images costs more than the forward pass.
    Images become float32 on the training device (``size`` resizes them),
    where ``augment`` then runs. ``shard=(index, count)`` gives a
    data-parallel process its share.
    """

    def __init__(
        self, dataset, batch_size, shuffle=False, generator=None, augment=None, device="cpu",
        shard=(0, 1), move_targets=False, size=None, memory_channels_last=True,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.augment = augment
        self.device = device
        self.shard = shard
        # skorch moves targets itself unless an accelerator places the data.
        self.move_targets = move_targets
        self.size = size
        self.memory_channels_last = memory_channels_last

    def _n_samples(self):
        # Data-parallel training: process ``index`` of ``count`` takes every
        # count-th image of the (same, seeded) order, all processes the same
        # number so that their gradient steps stay in lockstep.
        index, count = self.shard
        return len(self.dataset) // count if self.shuffle else len(self.dataset)

    def _bounds(self):
        n_samples = self._n_samples()
        starts = list(range(0, n_samples, self.batch_size))
        if self.shuffle and len(starts) > 1 and n_samples - starts[-1] == 1:
            # A training batch of one image breaks batch norm on small maps:
            # fold it into the batch before.
            starts.pop()
        return zip(starts, starts[1:] + [n_samples])

    def __len__(self):
        return len(list(self._bounds()))

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(len(self.dataset), generator=self.generator)
            index, count = self.shard
            order = order[index : self._n_samples() * count : count]
        else:
            order = torch.arange(len(self.dataset))
        positions = [order[start:stop] for start, stop in self._bounds()]
        images = read_batches(self.dataset.images, (p.numpy() for p in positions),
                              self.device, self.size, self.memory_channels_last)
        weights = self.dataset.weights
        for index, X in zip(positions, images):
            y = self.dataset.y[index]
            if torch.is_tensor(y) and y.dtype in (torch.int16, torch.int32):
                y = y.long()  # compact masks in memory; losses take int64
            batch_weights = None if weights is None else weights[index]
            if self.augment is not None:
                X, y, batch_weights = self.augment(X, y, batch_weights)
                X = channels_last(X, self.memory_channels_last)
            if self.move_targets:
                # After augmentation, which may have mixed the targets on either device.
                y = y.to(self.device, non_blocking=True)
            # The loss moves the weights to its device.
            yield X, y if batch_weights is None else WeightedTargets(y, batch_weights)


class TrainingAugment:
    """Adapt the estimator's ``augment`` to training batches: ``(X, y) -> (X, y)``.

    An ImageAugmenter draws its parameters from ``rng``, the estimator's own
    seeded generator, so every epoch differs and the same ``random_state``
    replays the same run. ``target_kind`` says what ``y`` is: "labels"
    (``n_classes`` lets mixup and cutmix turn them into mixed one-hot
    targets), "values" (regression targets, mixed as numbers) or "masks"
    (moved with the images' geometry).
    """

    def __init__(self, augment, rng, target_kind, n_classes=None):
        self.augment = augment
        self.rng = rng
        self.target_kind = target_kind
        self.n_classes = n_classes

    def __call__(self, X, y, weights=None):
        """Augmented ``(X, y, weights)``; mixup and cutmix mix the weights with the targets."""
        if hasattr(self.augment, "_augment_training_batch"):
            return self.augment._augment_training_batch(
                X, y, rng=self.rng, n_classes=self.n_classes, target_kind=self.target_kind,
                sample_weight=weights,
            )
        return self.augment(X), y, weights

