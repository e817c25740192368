"""Test models shaped like the reference models, with fixed seeds.

`build_dscnn()` has the layers of MLPerf Tiny's keyword-spotting DS-CNN (input 1x49x10 MFCC,
conv 10x4 stride 2, depthwise-separable blocks, average pool, dense, softmax); `build_zoo()`
adds the ops the browser and other converters must also cover: Pad, Concat, MaxPool with
padding, global mean, residual Add, ReLU6, sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU()]


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so folding them is actually tested."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


class DSCNN(nn.Module):
    def __init__(self, channels: int = 64, blocks: int = 4, classes: int = 12):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, (10, 4), stride=2, padding=(5, 1)), *_bn_relu(channels)]
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels), *_bn_relu(channels),
                       nn.Conv2d(channels, channels, 1), *_bn_relu(channels)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d((25, 5))
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return torch.softmax(self.head(torch.flatten(x, 1)), dim=1)


class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.branch_a = nn.Conv2d(8, 8, 1)
        self.branch_b = nn.Sequential(nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(8, 8, (2, 4)))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self.stem(x))
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        x = self.pool(x)
        x = x + torch.relu(self.dw(x))
        x = x.mean(dim=(2, 3))
        return torch.sigmoid(self.head(x))


def build_dscnn() -> DSCNN:
    torch.manual_seed(0)
    return _randomize_bn(DSCNN())


def build_zoo() -> Zoo:
    torch.manual_seed(0)
    return Zoo().eval()


class Bilinear(nn.Module):
    """A layer whose ONNX graph has an op (Einsum) that edgeport's TF.js conversion lacks."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return torch.einsum("bi,bj->bij", y, y).flatten(1)


def build_einsum() -> Bilinear:
    torch.manual_seed(0)
    return Bilinear().eval()


class Wide(nn.Module):
    """1.1 M float32 weights (4.4 MB): more than one 4 MB TF.js weight shard."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1100, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def build_wide() -> Wide:
    torch.manual_seed(0)
    return Wide().eval()
