"""Building blocks of convolutional and attention networks."""

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Module):
    """Convolution, optional batch normalization, then ReLU.

    The convolution keeps the spatial size ("same" padding) so that a network
    is shaped by its pooling layers alone.

    Parameters
    ----------
    in_channels, out_channels : int
        Number of input and output feature maps (filters).
    kernel_size : int, default=3
        Side of the square convolution kernel (odd).
    batch_norm : bool, default=True
        Normalize each feature map over the batch before the activation. The
        convolution then has no bias, which batch norm would cancel.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import ConvBlock
    >>> ConvBlock(3, 16)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 16, 32, 32])
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, batch_norm=True):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            bias=not batch_norm,
        )
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """Two convolutions with a shortcut connection (He et al., 2016).

    ``out = relu(F(x) + shortcut(x))`` where ``F`` is conv-BN-ReLU-conv-BN.
    The shortcut is the identity when the number of channels is unchanged and
    a 1x1 projection otherwise, so the block can change width.

    Parameters
    ----------
    in_channels, out_channels : int
        Number of input and output feature maps.
    kernel_size : int, default=3
        Side of the square convolution kernels.
    batch_norm : bool, default=True
        Use batch normalization after each convolution.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import ResidualBlock
    >>> ResidualBlock(16, 32)(torch.rand(2, 16, 8, 8)).shape
    torch.Size([2, 32, 8, 8])
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, batch_norm=True):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = ConvBlock(in_channels, out_channels, kernel_size, batch_norm)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, kernel_size, padding=padding, bias=not batch_norm
        )
        self.norm2 = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        if batch_norm:
            # Zero-init the last BN scale so each block starts as the identity:
            # deep residual stacks then train as stably as shallow ones.
            nn.init.zeros_(self.norm2.weight)
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=not batch_norm),
                nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity(),
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.norm2(self.conv2(self.conv1(x))) + self.shortcut(x))


class Downsample(nn.Module):
    """Halve the spatial size with max or average pooling.

    Unlike a plain ``MaxPool2d(2)``, an axis of size 1 is left alone and an odd
    size is rounded up, so any image size (down to 1x1, or a 1xW strip) goes
    through a deep network without errors.

    Parameters
    ----------
    pooling : {"max", "avg"}, default="max"
        Keep the strongest response of each 2x2 window, or its mean.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import Downsample
    >>> Downsample("avg")(torch.rand(2, 16, 32, 32)).shape
    torch.Size([2, 16, 16, 16])
    """

    def __init__(self, pooling="max"):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}.")
        self.pooling = pooling

    def forward(self, x):
        kernel = (min(2, x.shape[-2]), min(2, x.shape[-1]))
        if kernel == (1, 1):
            return x
        if self.pooling == "max":
            return F.max_pool2d(x, kernel, ceil_mode=True)
        return F.avg_pool2d(x, kernel, ceil_mode=True)

    def extra_repr(self):
        return f"pooling={self.pooling!r}"


class GlobalAvgPool(nn.Module):
    """Average each feature map over its positions: ``(n, c, h, w) -> (n, c)``.

    Replacing a flatten + fully-connected head with global average pooling
    removes most of a CNN's parameters, makes it accept any image size and
    lets class activation maps be read off the last layer (Lin et al., 2014;
    Zhou et al., 2016).

    Parameters
    ----------
    *args, **kwargs
        Accepted and ignored, as by ``torch.nn.Module``; the layer has no
        parameters.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import GlobalAvgPool
    >>> GlobalAvgPool()(torch.ones(2, 8, 5, 5)).shape
    torch.Size([2, 8])
    """

    def forward(self, x):
        return x.mean(dim=(-2, -1))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over a token sequence.

    Each token is projected to queries, keys and values; every token's output
    is the softmax(QK^T / sqrt(d))-weighted sum of all values, per head, so it
    mixes information from every other position. The computation uses
    :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels)
    unless the attention weights are asked for.

    Parameters
    ----------
    embed_dim : int
        Size of each token; must be divisible by ``n_heads``.
    n_heads : int, default=4
        Number of attention heads.
    attention_dropout : float, default=0.0
        Dropout on the attention weights during training.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import MultiHeadSelfAttention
    >>> tokens = torch.rand(2, 65, 64)  # (batch, tokens, embed_dim)
    >>> MultiHeadSelfAttention(64, n_heads=4)(tokens).shape
    torch.Size([2, 65, 64])
    """

    def __init__(self, embed_dim, n_heads=4, attention_dropout=0.0):
        super().__init__()
        if embed_dim % n_heads:
            raise ValueError(
                f"embed_dim={embed_dim} must be divisible by n_heads={n_heads}."
            )
        self.n_heads = n_heads
        self.attention_dropout = attention_dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, return_attention=False):
        """Attend over ``x`` of shape ``(n, tokens, embed_dim)``.

        With ``return_attention=True`` also return the attention weights,
        shape ``(n, n_heads, tokens, tokens)``, each row summing to 1.
        """
        n, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.n_heads, dim // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (n, heads, tokens, head_dim)
        dropout = self.attention_dropout if self.training else 0.0
        if return_attention:
            scores = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5)
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        out = self.proj(out.transpose(1, 2).reshape(n, tokens, dim))
        return (out, weights) if return_attention else out


class SelfAttention2d(nn.Module):
    """Self-attention over the positions of a feature map, with a residual gate.

    The ``h * w`` positions of the map are the tokens (non-local / SAGAN
    style): ``out = x + gamma * attention(x)``. ``gamma`` starts at 0, so the
    block begins as the identity and the network learns how much global
    context to mix in.

    Parameters
    ----------
    channels : int
        Number of feature maps of the input.
    n_heads : int, default=4
        Attention heads; reduced to a divisor of ``channels`` if needed.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import SelfAttention2d
    >>> SelfAttention2d(32)(torch.rand(2, 32, 8, 8)).shape
    torch.Size([2, 32, 8, 8])
    """

    def __init__(self, channels, n_heads=4):
        super().__init__()
        while channels % n_heads:
            n_heads -= 1
        self.norm = nn.LayerNorm(channels)
        self.attention = MultiHeadSelfAttention(channels, n_heads)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x, return_attention=False):
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (n, h*w, c)
        normed = self.norm(tokens)
        if return_attention:
            attended, weights = self.attention(normed, return_attention=True)
        else:
            attended, weights = self.attention(normed), None
        out = x + self.gamma * attended.transpose(1, 2).reshape(n, c, h, w)
        return (out, weights) if return_attention else out


def global_pool(maps, mode="avg"):
    """Pool feature maps ``(n, c, h, w)`` to vectors: ``"avg"``, ``"max"`` or both.

    Parameters
    ----------
    maps : torch.Tensor of shape (n, c, h, w)
        Feature maps.
    mode : {"avg", "max", "avgmax"}, default="avg"
        ``"avgmax"`` concatenates the average and the maximum, ``(n, 2c)``.

    Returns
    -------
    vectors : torch.Tensor of shape (n, c) or (n, 2c)

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import global_pool
    >>> global_pool(torch.ones(2, 8, 5, 5), "avgmax").shape
    torch.Size([2, 16])
    """
    if mode == "avg":
        return maps.mean(dim=(-2, -1))
    if mode == "max":
        return maps.amax(dim=(-2, -1))
    if mode == "avgmax":
        return torch.cat([maps.mean(dim=(-2, -1)), maps.amax(dim=(-2, -1))], dim=1)
    raise ValueError(f"pooling must be 'avg', 'max' or 'avgmax'; got {mode!r}.")
