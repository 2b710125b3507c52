"""A configurable convolutional network for image classification/regression."""

import torch
from torch import nn

from .blocks import ConvBlock, Downsample, GlobalAvgPool, ResidualBlock, SelfAttention2d


class CNN(nn.Module):
    """Stages of convolutions and pooling, then a classification/regression head.

    Stage ``i`` has ``filters[i]`` feature maps: two conv-BN-ReLU layers (or a
    residual block) followed by 2x2 pooling, except after the last stage,
    whose maps go to the head. The head is global average pooling (``"gap"``)
    or flattening (``"flatten"``), then the optional ``hidden_units``
    fully-connected layers and a linear output layer.

    Parameters
    ----------
    in_channels : int
        Channels of the input images (1 for grayscale, 3 for RGB).
    n_outputs : int
        Number of classes (logits) or regression targets.
    input_size : tuple of int
        ``(height, width)`` of the input images; only the ``"flatten"`` head
        depends on it.
    filters : tuple of int, default=(32, 64, 128)
        Feature maps of each stage.
    kernel_size : int, default=3
        Side of the convolution kernels.
    pooling : {"max", "avg"}, default="max"
        Pooling between stages.
    batch_norm : bool, default=True
        Batch normalization after each convolution.
    dropout : float, default=0.0
        Dropout probability before each fully-connected layer.
    residual : bool, default=False
        Use residual blocks with identity/projection shortcuts.
    attention : bool, default=False
        Add a self-attention block over the positions of the last feature map.
    head : {"gap", "flatten"}, default="gap"
        Global average pooling or a flatten + fully-connected head.
    hidden_units : tuple of int, default=()
        Sizes of extra fully-connected layers before the output layer.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import CNN
    >>> net = CNN(in_channels=1, n_outputs=10, input_size=(28, 28), filters=(16, 32))
    >>> net(torch.rand(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    """

    def __init__(
        self,
        in_channels,
        n_outputs,
        input_size,
        filters=(32, 64, 128),
        kernel_size=3,
        pooling="max",
        batch_norm=True,
        dropout=0.0,
        residual=False,
        attention=False,
        head="gap",
        hidden_units=(),
    ):
        super().__init__()
        if head not in ("gap", "flatten"):
            raise ValueError(f"head must be 'gap' or 'flatten', got {head!r}.")
        self.stages = nn.ModuleList()
        channels = in_channels
        for index, width in enumerate(filters):
            if residual:
                block = [ResidualBlock(channels, width, kernel_size, batch_norm)]
            else:
                block = [
                    ConvBlock(channels, width, kernel_size, batch_norm),
                    ConvBlock(width, width, kernel_size, batch_norm),
                ]
            if index < len(filters) - 1:
                block.append(Downsample(pooling))
            self.stages.append(nn.Sequential(*block))
            channels = width
        self.attention = SelfAttention2d(channels) if attention else None
        self.pool = GlobalAvgPool() if head == "gap" else nn.Flatten()
        self.eval()  # a probe of one image must not meet batch norm in training mode
        with torch.no_grad():
            probe = torch.zeros(1, in_channels, *input_size)
            n_features = self.pool(self.forward_features(probe)).shape[1]
        self.train()
        layers = []
        for units in hidden_units:
            layers += [nn.Dropout(dropout), nn.Linear(n_features, units), nn.ReLU(True)]
            n_features = units
        layers += [nn.Dropout(dropout), nn.Linear(n_features, n_outputs)]
        self.head = nn.Sequential(*layers)

    def forward_features(self, x, stage=None):
        """Feature maps after ``stage`` (default: the last, with attention)."""
        last = len(self.stages) - 1 if stage is None else stage
        for block in self.stages[: last + 1]:
            x = block(x)
        if stage is None and self.attention is not None:
            x = self.attention(x)
        return x

    def forward(self, x):
        return self.head(self.pool(self.forward_features(x)))
