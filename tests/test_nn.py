"""The plain torch building blocks."""

import torch
import torch.nn.functional as F

from skvision.nn import (
    CNN,
    ConvBlock,
    Downsample,
    GlobalAvgPool,
    MultiHeadSelfAttention,
    ResidualBlock,
    SelfAttention2d,
)


def test_conv_block_keeps_size_and_has_no_bias_with_batch_norm():
    block = ConvBlock(3, 8, kernel_size=5)
    assert block(torch.randn(2, 3, 9, 7)).shape == (2, 8, 9, 7)
    assert block.conv.bias is None
    assert ConvBlock(3, 8, batch_norm=False).conv.bias is not None


def test_residual_block_is_identity_at_init_and_projects():
    block = ResidualBlock(8, 8).eval()
    x = torch.rand(2, 8, 5, 5)  # non-negative: ReLU(x) == x
    torch.testing.assert_close(block(x), x)
    assert isinstance(block.shortcut, torch.nn.Identity)
    widening = ResidualBlock(4, 8)
    assert widening(torch.randn(2, 4, 5, 5)).shape == (2, 8, 5, 5)
    assert isinstance(widening.shortcut, torch.nn.Sequential)


def test_downsample_handles_odd_and_unit_sizes():
    assert Downsample("max")(torch.randn(1, 2, 7, 5)).shape == (1, 2, 4, 3)
    assert Downsample("avg")(torch.randn(1, 2, 1, 6)).shape == (1, 2, 1, 3)
    x = torch.randn(1, 2, 1, 1)
    assert torch.equal(Downsample()(x), x)
    x = torch.tensor([[[[1.0, 5.0], [3.0, 2.0]]]])
    assert Downsample("max")(x).item() == 5.0
    assert Downsample("avg")(x).item() == 2.75


def test_global_avg_pool():
    x = torch.randn(3, 4, 5, 6)
    torch.testing.assert_close(GlobalAvgPool()(x), x.mean(dim=(2, 3)))


def test_attention_equals_naive_softmax_attention():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(16, n_heads=4).eval()
    x = torch.randn(2, 10, 16)
    q, k, v = attention.qkv(x).reshape(2, 10, 3, 4, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / 4**0.5, dim=-1)
    naive = attention.proj((weights @ v).transpose(1, 2).reshape(2, 10, 16))
    fast = attention(x)
    explicit, returned = attention(x, return_attention=True)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(returned.sum(-1), torch.ones(2, 4, 10))


def test_self_attention_2d_starts_as_identity():
    block = SelfAttention2d(12)
    x = torch.randn(2, 12, 3, 4)
    torch.testing.assert_close(block(x), x)
    out, weights = block(x, return_attention=True)
    assert weights.shape == (2, 4, 12, 12)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_cnn_shapes_and_heads():
    net = CNN(3, 5, (20, 12), filters=(4, 8, 16))
    assert net(torch.randn(2, 3, 20, 12)).shape == (2, 5)
    assert net.forward_features(torch.randn(2, 3, 20, 12), stage=0).shape == (2, 4, 10, 6)
    flat = CNN(1, 2, (8, 8), filters=(4, 8), head="flatten", hidden_units=(16, 8))
    assert flat.head[1].in_features == 8 * 4 * 4
    assert flat(torch.randn(3, 1, 8, 8)).shape == (3, 2)
    gap = CNN(1, 2, (8, 8), filters=(4, 8))
    assert gap(torch.randn(1, 1, 32, 32)).shape == (1, 2)  # GAP accepts any size
    loss = F.cross_entropy(gap(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in gap.parameters())
