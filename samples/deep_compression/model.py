"""LeNet-300-100 (LeCun et al. 1998; the MLP of the Deep Compression paper) for the 8x8 digits.

Three weight sets, made by `python -m samples.deep_compression.train` and committed:
`build()` the float model, `build_pruned()` after gradual pruning with fine-tuning, and
`build_compressed()` after k-means weight sharing with centroid fine-tuning (pruned + clustered).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
WEIGHTS = {"float": HERE / "lenet_float.pt", "pruned": HERE / "lenet_pruned.pt",
           "clustered": HERE / "lenet_clustered.pt"}


class LeNet300100(nn.Module):
    """flatten 64 -> linear 300 relu -> linear 100 relu -> linear 10 (50,200 weights)."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                                        nn.Linear(100, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


def _load(stage: str) -> LeNet300100:
    model = LeNet300100()
    model.load_state_dict(torch.load(WEIGHTS[stage], weights_only=True))
    return model.eval()


def build() -> LeNet300100:
    """The trained float model (input [N, 1, 8, 8] float32 in [0, 1], output 10 logits)."""
    return _load("float")


def build_pruned() -> LeNet300100:
    """The float model after gradual magnitude pruning with fine-tuning (zeros are exact)."""
    return _load("pruned")


def build_compressed() -> LeNet300100:
    """Pruned, then k-means weight sharing (16 values per layer) with fine-tuned centroids."""
    return _load("clustered")
