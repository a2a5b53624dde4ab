import pytest
import torch
import torch.nn.functional as F
from torch import nn

import video_adapter.models.layers as layers
from video_adapter.models.layers import FactorisedConv

from helpers import randomize


@pytest.mark.parametrize("kernel, stride, padding", [
    ((1, 3, 3), (1, 1, 1), (0, 1, 1)), ((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # space, and its downsampling
    ((3, 1, 1), (1, 1, 1), (1, 0, 0)), ((3, 1, 1), (2, 1, 1), (1, 0, 0)),  # time, and its downsampling
    ((1, 1, 1), (1, 1, 1), (0, 0, 0))])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_factorised_conv_is_the_conv3d_it_replaces(kernel, stride, padding, memory_format):
    torch.manual_seed(0)
    conv = FactorisedConv(5, 7, kernel, stride, padding)
    x = torch.randn(2, 5, 6, 8, 10)
    want = F.conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    got = conv(x.contiguous(memory_format=memory_format))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=memory_format)  # the layout it was given
    # the parameters are nn.Conv3d's: a checkpoint of either loads into the other
    plain = nn.Conv3d(5, 7, kernel, stride, padding)
    plain.load_state_dict(conv.state_dict())
    torch.testing.assert_close(plain(x), want)


def test_factorised_conv_refuses_a_kernel_over_space_and_time():
    with pytest.raises(ValueError, match="spans both space and time"):
        FactorisedConv(2, 2, (3, 3, 3), padding=(1, 1, 1))


@pytest.mark.parametrize("masked", [False, True])
def test_attention_in_chunks_equals_one_call(monkeypatch, masked):
    torch.manual_seed(0)
    layer = layers.Attention(8, 6 if masked else None, head_dim=4)  # 2 heads
    randomize(layer)
    x = torch.randn(7, 5, 8, requires_grad=True)
    context = torch.randn(7, 3, 6) if masked else None
    mask = torch.tensor([[True, True, False]] * 6 + [[True, False, False]])[:, None, None] if masked else None
    whole = layer(x, context, mask)
    grad_whole, = torch.autograd.grad(whole.square().sum(), x)
    monkeypatch.setattr(layers, "MAX_SEQUENCES", 6)  # 3 sequences of 2 heads per call: chunks of 3, 3 and 1
    chunked = layer(x, context, mask)
    grad_chunked, = torch.autograd.grad(chunked.square().sum(), x)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(grad_chunked, grad_whole)


def test_factorised_conv_runs_as_conv2d_only_on_channels_last_input(monkeypatch):
    conv = FactorisedConv(4, 4, (1, 3, 3), padding=(0, 1, 1))
    x = torch.randn(1, 4, 3, 6, 6)
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: pytest.fail("NCDHW input took the Conv2d route (two copies)"))
    conv(x)  # NCDHW: the plain Conv3d
    monkeypatch.undo()
    monkeypatch.setattr(F, "conv3d", lambda *a, **k: pytest.fail("channels-last input took cuDNN's 3-D kernels"))
    conv(x.contiguous(memory_format=torch.channels_last_3d))


def test_noise_level_features_are_time_features_and_augmentation_features_vanish_at_level_0():
    import math

    logsnr = torch.tensor([-20.0, -3.0, 0.0, 4.5, 20.0])
    u = torch.atan(torch.exp(-0.5 * logsnr)) * (2 / math.pi)
    assert torch.equal(layers.noise_level_features(logsnr, 16), layers.time_features(u, 16))
    aug = layers.augmentation_features(torch.tensor([0.0, 0.01, 0.2, 0.5]), 16)
    assert aug.shape == (4, 16) and torch.equal(aug[0], torch.zeros(16))
    assert all(float(row.abs().max()) > 1e-3 for row in aug[1:])
    assert not torch.allclose(aug[2], aug[3])
