"""Neural style transfer losses and feature taps (Gatys et al., 2016), plain torch.

A CNN's deep activations describe *what* is in an image (content); the
correlations between its feature maps, their Gram matrices, describe the
textures and colors regardless of where they are (style). Optimizing an
image so its activations match one image's content and its Gram matrices
another image's style transfers the style.
"""

import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureTaps", "content_loss", "gram_matrix", "style_loss", "total_variation_loss"]


def gram_matrix(features):
    """Normalized Gram matrices of feature maps.

    Parameters
    ----------
    features : torch.Tensor of shape (n, c, h, w)

    Returns
    -------
    gram : torch.Tensor of shape (n, c, c)
        ``F F^T / (c h w)`` with ``F`` the ``(c, h*w)`` maps of each image:
        the normalization makes layers of different sizes comparable.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import gram_matrix
    >>> gram_matrix(torch.ones(2, 3, 4, 4))[0]
    tensor([[0.3333, 0.3333, 0.3333],
            [0.3333, 0.3333, 0.3333],
            [0.3333, 0.3333, 0.3333]])
    """
    n, channels, height, width = features.shape
    flat = features.reshape(n, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


def content_loss(features, target):
    """Mean squared difference of feature maps (the content to keep).

    Parameters
    ----------
    features : torch.Tensor of shape (n, c, h, w)
        Feature maps of the image being optimized.
    target : torch.Tensor of shape (n, c, h, w)
        Feature maps of the content image.

    Returns
    -------
    loss : torch.Tensor, a scalar

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import content_loss
    >>> float(content_loss(torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)))
    1.0
    """
    return F.mse_loss(features, target)


def style_loss(features, target_grams, weights=None):
    """Sum over layers of the mean squared difference of Gram matrices.

    Parameters
    ----------
    features : list of torch.Tensor (n, c, h, w)
        Feature maps of the image being optimized, one per style layer.
    target_grams : list of torch.Tensor (c, c) or (n, c, c)
        The style's Gram matrices, one per layer.
    weights : list of float, default=None
        Weight of each layer; equal by default.

    Returns
    -------
    loss : torch.Tensor, a scalar

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import gram_matrix, style_loss
    >>> maps = [torch.rand(1, 8, 6, 6), torch.rand(1, 16, 3, 3)]
    >>> float(style_loss(maps, [gram_matrix(m) for m in maps]))
    0.0
    """
    weights = [1.0] * len(features) if weights is None else weights
    return sum(weight * F.mse_loss(gram_matrix(maps), target.expand(len(maps), -1, -1))
               for weight, maps, target in zip(weights, features, target_grams))


def total_variation_loss(images):
    """Mean absolute difference between neighbouring pixels: penalizes noise.

    Parameters
    ----------
    images : torch.Tensor of shape (n, c, h, w)

    Returns
    -------
    loss : torch.Tensor, a scalar
        Zero for a constant image.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import total_variation_loss
    >>> float(total_variation_loss(torch.ones(1, 3, 8, 8)))
    0.0
    """
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


class FeatureTaps(nn.Module):
    """Run a network and return the activations of named sub-modules.

    Only the part of the network up to the deepest requested layer runs:
    ``forward`` stops as soon as every tap has fired.

    Parameters
    ----------
    network : torch.nn.Module
        Typically a :class:`~skvision.nn.Backbone`; frozen and in eval mode.
    layers : list of str
        Names from ``network.named_modules()``, e.g. ``"network.blocks.1.1.bn1"``.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import FeatureTaps, build_backbone
    >>> taps = FeatureTaps(build_backbone(), ["network.blocks.0", "network.blocks.2"])
    >>> {name: tuple(m.shape) for name, m in taps(torch.rand(1, 3, 64, 64)).items()}
    {'network.blocks.0': (1, 16, 32, 32), 'network.blocks.2': (1, 40, 8, 8)}
    """

    def __init__(self, network, layers):
        super().__init__()
        modules = dict(network.named_modules())
        unknown = [name for name in layers if name not in modules]
        if unknown:
            examples = [name for name in modules if name][:8]
            raise ValueError(
                f"Layers {unknown} are not modules of the network; names look like {examples}."
            )
        self.network = network.eval().requires_grad_(False)
        self.layers = list(dict.fromkeys(layers))
        self._outputs = {}
        for name in self.layers:
            modules[name].register_forward_hook(self._record(name))

    def _record(self, name):
        def hook(module, inputs, output):
            self._outputs[name] = output
            if len(self._outputs) == len(self.layers):
                raise _AllTapped
        return hook

    def train(self, mode=True):
        # The network stays in eval mode: batch norm uses its running statistics.
        return super().train(False)

    def forward(self, x):
        self._outputs = {}
        try:
            self.network(x)
        except _AllTapped:
            pass
        outputs, self._outputs = self._outputs, {}
        return outputs


class _AllTapped(Exception):
    """Raised by the last hook: the rest of the network is not needed."""
