"""A compact vision transformer (Dosovitskiy et al., 2021) in plain torch."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import MultiHeadSelfAttention


def auto_patch_size(input_size):
    """The patch side giving a grid of at most 7x7 tokens (2x2 patches for 8x8 images)."""
    return max(1, math.ceil(min(input_size) / 7))


class PatchEmbedding(nn.Module):
    """Cut images into ``patch_size`` squares and project each to a token.

    With ``conv_stem=True`` two 3x3 convolutions (with batch norm and GELU)
    see each pixel's neighbourhood first, across patch borders: early
    convolutions make transformers train far better on small data sets
    (Xiao et al., 2021). Images whose sides are not multiples of the patch
    size are zero-padded on the bottom and right. Output:
    ``(n, grid_h * grid_w, embed_dim)``.
    """

    def __init__(self, in_channels, embed_dim, patch_size, conv_stem=False):
        super().__init__()
        self.patch_size = patch_size
        if conv_stem:
            width = max(embed_dim // 2, 8)
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                nn.GELU(),
                nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                nn.GELU(),
            )
            in_channels = width
        else:
            self.stem = nn.Identity()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)

    def grid(self, height, width):
        return math.ceil(height / self.patch_size), math.ceil(width / self.patch_size)

    def forward(self, x):
        grid_h, grid_w = self.grid(*x.shape[-2:])
        pad_h = grid_h * self.patch_size - x.shape[-2]
        pad_w = grid_w * self.patch_size - x.shape[-1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.proj(self.stem(x)).flatten(2).transpose(1, 2)


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, embed_dim, n_heads, mlp_ratio=2.0, dropout=0.0, attention_dropout=0.0):
        super().__init__()
        hidden = int(embed_dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attention = MultiHeadSelfAttention(embed_dim, n_heads, attention_dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, embed_dim), nn.Dropout(dropout),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, return_attention=False):
        if return_attention:
            attended, weights = self.attention(self.norm1(x), return_attention=True)
        else:
            attended, weights = self.attention(self.norm1(x)), None
        x = x + self.dropout(attended)
        x = x + self.mlp(self.norm2(x))
        return (x, weights) if return_attention else x


class VisionTransformer(nn.Module):
    """Patch embedding, class token, positional embeddings and encoder blocks.

    Every patch becomes a token; ``depth`` blocks of multi-head self-attention
    let each token gather information from all others; the class token's final
    state feeds a linear head. Positional embeddings are learned for the
    training grid and interpolated for other image sizes.

    Parameters
    ----------
    in_channels, n_outputs : int
        Image channels; classes (logits) or regression targets.
    input_size : tuple of int
        ``(height, width)`` of the training images.
    patch_size : int or None, default=None
        Side of the square patches; None picks a grid of about 7x7.
    embed_dim : int, default=64
        Token size.
    depth : int, default=4
        Number of encoder blocks.
    n_heads : int, default=4
        Attention heads per block.
    mlp_ratio : float, default=2.0
        Hidden size of each block's MLP as a multiple of ``embed_dim``.
    dropout, attention_dropout : float, default=0.1, 0.0
        Dropout on the block outputs and on the attention weights.
    conv_stem : bool, default=False
        Two 3x3 convolutions before the patch projection (see
        :class:`PatchEmbedding`).
    """

    def __init__(self, in_channels, n_outputs, input_size, patch_size=None, embed_dim=64,
                 depth=4, n_heads=4, mlp_ratio=2.0, dropout=0.1, attention_dropout=0.0,
                 conv_stem=False):
        super().__init__()
        patch_size = patch_size or auto_patch_size(input_size)
        self.patch_embedding = PatchEmbedding(in_channels, embed_dim, patch_size, conv_stem)
        self.grid = self.patch_embedding.grid(*input_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        n_tokens = 1 + self.grid[0] * self.grid[1]
        self.position = nn.Parameter(torch.randn(1, n_tokens, embed_dim) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, n_heads, mlp_ratio, dropout, attention_dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, n_outputs)

    def _position_for(self, grid):
        if grid == self.grid:
            return self.position
        patches = self.position[:, 1:].reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([self.position[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x, return_attention=False):
        """Logits; with ``return_attention=True`` also each block's attention weights."""
        grid = self.patch_embedding.grid(*x.shape[-2:])
        tokens = self.patch_embedding(x)
        tokens = torch.cat([self.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.dropout(tokens + self._position_for(grid))
        attention = []
        for block in self.blocks:
            if return_attention:
                tokens, weights = block(tokens, return_attention=True)
                attention.append(weights)
            else:
                tokens = block(tokens)
        logits = self.head(self.norm(tokens[:, 0]))
        return (logits, attention) if return_attention else logits


def attention_rollout(attention, grid):
    """Attention of the class token over the patches, rolled out across blocks.

    Each block's head-averaged attention, plus the identity for the residual
    connection and renormalized, is multiplied through the blocks (Abnar &
    Zuidema, 2020); the class token's row over the patch tokens is returned.

    Parameters
    ----------
    attention : list of tensors (n, heads, tokens, tokens)
        Per-block attention weights, class token first.
    grid : tuple of int
        ``(grid_h, grid_w)`` of the patch tokens.

    Returns
    -------
    maps : tensor of shape (n, grid_h, grid_w)
        Non-negative, summing to 1 per image.
    """
    rollout = None
    for weights in attention:
        mixed = weights.mean(dim=1)
        mixed = mixed + torch.eye(mixed.shape[-1], device=mixed.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    maps = rollout[:, 0, 1:]
    maps = maps / maps.sum(dim=-1, keepdim=True)
    return maps.reshape(len(maps), *grid)
