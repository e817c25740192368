"""The digits CNN in low-bit variants, each a factory for `edgeport export`.

    float       samples.digits.model:build (the teacher)
    qat_int8    int8 quantization-aware training: weights on the learned int8 grid, the learned
                scales and ranges in `edgeport_qparams` (the export uses them, no recalibration)
    binary      binary weights (BWN / XNOR-Net): every middle layer's weights are α_c·{-1,+1}
    ternary     ternary weights (TWN): α_c·{-1,0,+1}
    xnor        binary weights and binary inputs (XNOR-Net), on a variant of the CNN whose
                binarized layers are not preceded by a ReLU (the sign of a ReLU output is all +1)

First and last layers stay int8 (the usual practice). Weights come from
`python -m samples.digits_lowbit.train` (committed).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from edgeport.training.lowbit import LowBitConfig, convert_lowbit, prepare_lowbit
from samples.digits.model import DigitsCNN

HERE = Path(__file__).resolve().parent
VARIANTS = ("qat_int8", "binary", "ternary", "xnor")
CONFIGS = {"binary": LowBitConfig(weights="binary"), "ternary": LowBitConfig(weights="ternary"),
           "xnor": LowBitConfig(weights="binary", activations="binary")}


class DigitsXNOR(nn.Module):
    """conv(1->32), [sign] conv(32->64), maxpool 2, [sign] linear(1024->128) relu, linear(128->10).

    The bracketed signs are added by `prepare_lowbit(..., activations="binary")`; each layer's
    bias sets the threshold of the sign after it (no batch norm, so every weight reaches the
    export exactly as trained).
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1),
                                      nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def architecture(variant: str) -> nn.Module:
    """The untrained float network a variant starts from."""
    return DigitsXNOR() if variant == "xnor" else DigitsCNN()


def weights_path(variant: str) -> Path:
    return HERE / f"{variant}.pt"


def _load(variant: str) -> nn.Module:
    state = torch.load(weights_path(variant), weights_only=True)
    if variant == "qat_int8":
        model = DigitsCNN()
        model.load_state_dict(state)
        model.edgeport_qparams = json.loads((HERE / "qat_int8_qparams.json").read_text())
        return model.eval()
    torch.manual_seed(0)
    model = convert_lowbit(prepare_lowbit(architecture(variant), CONFIGS[variant]).eval())
    model.load_state_dict(state)
    for key, record in model.edgeport_lowbit.items():  # α of the loaded weights, not the template's
        weight = model.get_parameter(key).detach().abs()
        record["alpha"] = [float(a) for a in weight.reshape(len(weight), -1).max(dim=1).values]
    return model.eval()


def qat_int8() -> nn.Module:
    return _load("qat_int8")


def binary() -> nn.Module:
    return _load("binary")


def ternary() -> nn.Module:
    return _load("ternary")


def xnor() -> nn.Module:
    return _load("xnor")
