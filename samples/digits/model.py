"""A small CNN for scikit-learn's bundled 8x8 digits (no download).

`build()` returns the trained model from the committed weights `digits_cnn.pt` (a plain
state dict, loaded with `weights_only=True`). `python -m samples.digits.train` retrains it and
rewrites the weights and the calibration / eval files, deterministically.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "digits_cnn.pt"


class DigitsCNN(nn.Module):
    """conv(1->16) relu, conv(16->32) relu, maxpool 2, linear(512->64) relu, linear(64->10)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build() -> DigitsCNN:
    """The trained digits CNN (input [N, 1, 8, 8] float32 in [0, 1], output 10 logits)."""
    model = DigitsCNN()
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return model.eval()


def build_untrained() -> DigitsCNN:
    torch.manual_seed(0)
    return DigitsCNN().eval()
