"""A scriptable stand-in for StyleGAN-V's FVD detector `i3d_torchscript.pt`, for tests only (random weights).

The real file is a TorchScript port of the tf.hub Kinetics-400 I3D; its class, `src.i3dpt_jit.I3D`, names it a
JIT form of hassony2/kinetics_i3d_pytorch's `src/i3dpt.py`: an Inception-v1 inflated to 3D with TF "SAME" padding,
Mixed blocks 3b..5c, a (2, 7, 7) average pool, a 1x1x1 logits conv, and logits averaged over time. Its forward is
`forward(x, rescale=False, resize=False, return_features=False)`: `rescale` maps [0, 255] to [-1, 1] with
x / 255 * 2 - 1, `resize` resizes every frame bilinearly to 224 x 224, and `return_features` returns the 400
time-averaged logits (the tf.hub layer FVD is defined on, "RGB/inception_i3d/Mean") instead of their softmax.

This copy keeps that topology, the call signature and the preprocessing, with every channel count scaled by `width`
so it runs on a CPU in a test. The exact interpolation kernel of the real port is not public source; bilinear with
align_corners=False is assumed here, which the package code does not depend on (it only passes the flags).
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def same_pad(n: int, k: int, s: int) -> List[int]:
    """TensorFlow SAME padding of one dimension: output size ceil(n / s), the odd pixel at the end."""
    total = max(k - (s if n % s == 0 else n % s), 0)
    return [total // 2, total - total // 2]


def tf_same_pad(x: Tensor, kernel: List[int], stride: List[int]) -> Tensor:
    """Zero-pad [B, C, T, H, W] as TensorFlow's SAME convolutions and pools do."""
    t, h, w = x.shape[2], x.shape[3], x.shape[4]
    pads = same_pad(w, kernel[2], stride[2]) + same_pad(h, kernel[1], stride[1]) + same_pad(t, kernel[0], stride[0])
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm (TF eps 1e-3) -> ReLU, or a biased conv alone for the logits."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = list(kernel), list(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=logits)
        self.batch3d = nn.Identity() if logits else nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.batch3d(self.conv3d(tf_same_pad(x, self.kernel, self.stride)))
        return out if self.logits else F.relu(out)


class MaxPoolSame(nn.Module):
    # Zero padding equals TF's -inf padding here: every pool follows a ReLU.
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(tf_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1, concatenated over channels."""

    def __init__(self, cin: int, c: List[int]):
        super().__init__()
        self.branch_0 = Unit3D(cin, c[0])
        self.branch_1 = nn.Sequential(Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


# (name, output channels per branch) of the Mixed blocks, in order; pools sit before 4b and 5b.
MIXED = [("3b", [64, 96, 128, 16, 32, 32]), ("3c", [128, 128, 192, 32, 96, 64]),
         ("4b", [192, 96, 208, 16, 48, 64]), ("4c", [160, 112, 224, 24, 64, 64]), ("4d", [128, 128, 256, 24, 64, 64]),
         ("4e", [112, 144, 288, 32, 64, 64]), ("4f", [256, 160, 320, 32, 128, 128]),
         ("5b", [256, 160, 320, 32, 128, 128]), ("5c", [384, 192, 384, 48, 128, 128])]


class InceptionI3d(nn.Module):
    """Kinetics I3D: [B, 3, T, 224, 224] in [-1, 1] -> time-averaged logits [B, num_classes]."""

    def __init__(self, num_classes: int = 400, width: float = 1.0):
        super().__init__()

        def w(channels: int) -> int:
            return max(1, round(channels * width))

        layers: List[nn.Module] = [Unit3D(3, w(64), (7, 7, 7), (2, 2, 2)), MaxPoolSame((1, 3, 3), (1, 2, 2)),
                                   Unit3D(w(64), w(64)), Unit3D(w(64), w(192), (3, 3, 3)),
                                   MaxPoolSame((1, 3, 3), (1, 2, 2))]
        cin = w(192)
        for name, c in MIXED:
            if name == "4b":
                layers.append(MaxPoolSame((3, 3, 3), (2, 2, 2)))
            if name == "5b":
                layers.append(MaxPoolSame((2, 2, 2), (2, 2, 2)))
            c = [w(v) for v in c]
            layers.append(Mixed(cin, c))
            cin = c[0] + c[2] + c[4] + c[5]
        self.features = nn.Sequential(*layers)
        self.logits = Unit3D(cin, num_classes, logits=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool3d(self.features(x), (2, 7, 7), (1, 1, 1))
        return self.logits(x).squeeze(4).squeeze(3).mean(2)


class StyleGANVI3D(nn.Module):
    """The StyleGAN-V detector's interface around `InceptionI3d`: uint8 or float [B, 3, T, H, W] in [0, 255]."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.net = InceptionI3d(400, width)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        x = x.float()
        if rescale:
            x = x / 255.0 * 2 - 1
        if resize:
            b, c, t, h, w = x.shape
            frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=[224, 224], mode="bilinear", align_corners=False)
            x = frames.reshape(b, t, c, 224, 224).permute(0, 2, 1, 3, 4)
        logits = self.net(x)
        return logits if return_features else logits.softmax(1)


def random_i3d(width: float = 1.0, seed: int = 0) -> torch.jit.ScriptModule:
    """A scripted `StyleGANVI3D` in eval mode with random weights that keep activations at unit scale.

    He-initialised convolutions and batch-norm statistics near (0, 1) keep the features input-dependent through all
    the layers, where PyTorch's default initialisation shrinks every layer's output and leaves nearly constant logits.
    """
    torch.manual_seed(seed)
    model = StyleGANVI3D(width).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return torch.jit.script(model)
