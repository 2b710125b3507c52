"""Losses the estimators train with beyond torch's own."""

import torch
from torch import nn

__all__ = ["MultiLabelLoss"]


class MultiLabelLoss(nn.Module):
    """Binary cross-entropy on logits, one per label, with label smoothing.

    Each target moves towards 1/2 by ``label_smoothing`` (the two-class form
    of :class:`torch.nn.CrossEntropyLoss`'s smoothing); ``pos_weight`` weighs
    each label's positives, as in :class:`torch.nn.BCEWithLogitsLoss`.
    Unreduced: returns one loss per image and label.
    """

    def __init__(self, label_smoothing=0.0, pos_weight=None):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("pos_weight", None if pos_weight is None
                             else torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits, targets):
        targets = targets.to(logits.dtype) * (1 - self.label_smoothing) + self.label_smoothing / 2
        return nn.functional.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=self.pos_weight, reduction="none")
