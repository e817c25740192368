"""A MobileNetV2-shaped network (inverted residuals, depthwise convs, ReLU6) for benchmarks.

Width 0.35 at 96x96 input, the Visual Wake Words configuration of MLPerf Tiny. Weights are
random (fixed seed); BatchNorm statistics are set so activations keep a realistic scale.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 3, 96, 96)

# expansion t, output channels c, repeats n, first stride s (MobileNetV2 paper, Table 2)
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _channels(c: float, divisor: int = 8) -> int:
    return max(divisor, int(c + divisor / 2) // divisor * divisor)


def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, relu=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, width: float = 0.35, classes: int = 2):
        super().__init__()
        cin = _channels(32 * width)
        layers = [conv_bn(3, cin, 3, 2)]
        for t, c, n, s in SETTINGS:
            cout = _channels(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = 1280 if width <= 1.0 else _channels(1280 * width)
        layers.append(conv_bn(cin, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def build(width: float = 0.35, classes: int = 2, seed: int = 0) -> MobileNetV2:
    """Random-weight MobileNetV2-0.35 for 96x96 RGB input (fixed seed)."""
    torch.manual_seed(seed)
    model = MobileNetV2(width, classes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def calibration(count: int = 64, seed: int = 1):
    """Random inputs in the range of normalized images (a callable data source)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, *INPUT_SHAPE[1:]), generator=generator).mul(2).sub(1).numpy()
