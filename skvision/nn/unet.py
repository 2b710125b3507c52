"""U-Net (Ronneberger et al., 2015) for semantic segmentation, in plain torch.

The encoder halves the resolution ``depth`` times while doubling the
filters, capturing context; the decoder upsamples back and concatenates the
encoder's maps of the same resolution (skip connections), which restores the
fine detail that pooling lost. The output has one logit map per class at the
input's resolution.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import MultiScaleFeatures
from .blocks import ConvBlock

__all__ = ["CrossEntropyDiceLoss", "DiceLoss", "UNet"]


class _DoubleConv(nn.Sequential):
    """Two 3x3 ConvBlocks, optionally with dropout between them (U-Net's unit)."""

    def __init__(self, in_channels, out_channels, batch_norm, dropout):
        super().__init__(
            ConvBlock(in_channels, out_channels, batch_norm=batch_norm),
            nn.Dropout2d(dropout) if dropout else nn.Identity(),
            ConvBlock(out_channels, out_channels, batch_norm=batch_norm),
        )


class _Up(nn.Module):
    """Upsample by 2, concatenate the skip connection, then a double conv."""

    def __init__(self, in_channels, skip_channels, out_channels, upsampling, batch_norm, dropout):
        super().__init__()
        if upsampling == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            up_channels = in_channels // 2
        else:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            up_channels = in_channels
        self.conv = _DoubleConv(up_channels + skip_channels, out_channels, batch_norm, dropout)

    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net with a configurable depth, width, upsampling and encoder.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_classes : int
        Output logit maps, one per class.
    depth : int, default=3
        Number of 2x downsamplings (the encoder has ``depth + 1`` levels).
    base_filters : int, default=16
        Filters of the first level; each level down doubles them.
    batch_norm : bool, default=True
        Batch normalization in every convolution block.
    dropout : float, default=0.0
        Channel dropout inside the blocks of the two deepest levels.
    upsampling : {"transpose", "bilinear"}, default="transpose"
        Learned transposed convolutions, or fixed bilinear upsampling.
    encoder : Backbone, default=None
        A pretrained backbone (:func:`~skvision.nn.build_backbone`) whose
        stages replace the encoder below full resolution; its maps at
        strides 2 to ``2 ** depth`` are the skip connections (an encoder
        that starts at a coarser stride, such as ConvNeXt at 4, has none at
        the finer ones), and a small convolution block keeps a
        full-resolution skip. Inputs are images
        in [0, 1] with 1 or 3 channels; the weights' normalization is
        applied inside.

    Notes
    -----
    Any input size works: the input is padded (reflect) to a multiple of
    ``2 ** depth`` and the output cropped back.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import UNet
    >>> UNet(in_channels=3, n_classes=4, depth=2)(torch.rand(1, 3, 50, 70)).shape
    torch.Size([1, 4, 50, 70])
    """

    def __init__(self, in_channels, n_classes, depth=3, base_filters=16, batch_norm=True,
                 dropout=0.0, upsampling="transpose", encoder=None):
        super().__init__()
        if upsampling not in ("transpose", "bilinear"):
            raise ValueError(f"upsampling must be 'transpose' or 'bilinear'; got {upsampling!r}.")
        self.depth = depth
        widths = [base_filters * 2**level for level in range(depth + 1)]
        deep = {depth - 1, depth}  # dropout only where the maps are small and many
        if encoder is None:
            self.encoder = None
            self.down = nn.ModuleList(
                _DoubleConv(in_channels if level == 0 else widths[level - 1], widths[level],
                            batch_norm, dropout if level in deep else 0.0)
                for level in range(depth + 1)
            )
            skip_channels = widths
        else:
            if in_channels not in (1, 3):
                raise ValueError(
                    f"A pretrained encoder takes 1 or 3 channels; got {in_channels}."
                )
            self.encoder = MultiScaleFeatures(encoder, [2**level for level in range(1, depth + 1)],
                                              shallow_optional=True)
            self.down = nn.ModuleList([_DoubleConv(in_channels, widths[0], batch_norm, 0.0)])
            skip_channels = [widths[0], *self.encoder.channels]
        self.up = nn.ModuleList(
            _Up(skip_channels[depth] if level == depth - 1 else widths[level + 1],
                skip_channels[level], widths[level], upsampling, batch_norm,
                dropout if level + 1 in deep else 0.0)
            for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], n_classes, kernel_size=1)

    def forward(self, x):
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            # Reflect needs the pad smaller than the side; replicate always works.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        if self.encoder is None:
            skips = []
            for level, block in enumerate(self.down):
                skips.append(block(x if level == 0 else F.max_pool2d(skips[-1], 2)))
        else:
            skips = [self.down[0](x), *self.encoder(x)]
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)[..., :height, :width]


class DiceLoss(nn.Module):
    """Soft Dice loss, averaged over classes: ``1 - 2|P∩T| / (|P| + |T|)``.

    Robust to class imbalance: every class counts equally however few
    pixels it covers. Pixels labelled ``ignore_index`` are left out.

    Parameters
    ----------
    ignore_index : int, default=-100
        Label of the pixels left out.
    smooth : float, default=1.0
        Added to the numerator and the denominator: a class absent from
        both the prediction and the target counts as a perfect match.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import DiceLoss
    >>> masks = torch.zeros(1, 4, 4, dtype=torch.long)
    >>> perfect = torch.stack([torch.full((4, 4), 10.0), torch.zeros(4, 4)])[None]
    >>> round(float(DiceLoss()(perfect, masks)), 3)
    0.0
    """

    def __init__(self, ignore_index=-100, smooth=1.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits, target):
        n_classes = logits.shape[1]
        valid = (target != self.ignore_index).unsqueeze(1)
        probabilities = logits.softmax(dim=1) * valid
        one_hot = F.one_hot(target.clamp(min=0), n_classes).permute(0, 3, 1, 2) * valid
        dims = (0, 2, 3)
        intersection = (probabilities * one_hot).sum(dims)
        total = probabilities.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        return 1 - dice.mean()


class CrossEntropyDiceLoss(nn.Module):
    """Cross-entropy plus Dice: per-pixel calibration and per-class balance.

    Parameters
    ----------
    ignore_index : int, default=-100
        Pixels with this label are left out of both terms.
    weight : torch.Tensor of shape (n_classes,), default=None
        Class weights of the cross-entropy term.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import CrossEntropyDiceLoss
    >>> logits = torch.zeros(1, 2, 4, 4)
    >>> masks = torch.zeros(1, 4, 4, dtype=torch.long)
    >>> round(float(CrossEntropyDiceLoss()(logits, masks)), 3)
    1.298
    """

    def __init__(self, ignore_index=-100, weight=None):
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        self.dice = DiceLoss(ignore_index=ignore_index)

    def forward(self, logits, target):
        return self.cross_entropy(logits, target) + self.dice(logits, target)
