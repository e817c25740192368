"""Digits CNNs that a test trained and saved, as `module:factory` sources for the CLI.

A test trains a model (QAT, binary weights), converts it and calls `save(model, name)`, which
writes `<name>.pt` into the folder named by `$EDGEPORT_TEST_MODELS`: the state dict plus the
numbers `convert` / `convert_lowbit` attached (`edgeport_qparams`, `edgeport_lowbit`). The
factories rebuild the model from it (loaded with `weights_only=True`), so an `edgeport export
testmodels.saved:digits_qat` subprocess exports exactly the model the test holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from samples.digits.model import DigitsCNN

FOLDER_VARIABLE = "EDGEPORT_TEST_MODELS"
ATTRIBUTES = ("edgeport_qparams", "edgeport_lowbit")


def _path(name: str) -> Path:
    folder = os.environ.get(FOLDER_VARIABLE)
    if not folder:
        raise RuntimeError(f"set {FOLDER_VARIABLE} to the folder the test saved its models in")
    return Path(folder) / f"{name}.pt"


def save(model: torch.nn.Module, name: str) -> Path:
    """Write `model` (a converted DigitsCNN) as `<name>.pt` into `$EDGEPORT_TEST_MODELS`."""
    path = _path(name)
    torch.save({"state_dict": model.state_dict(),
                "attributes": {a: getattr(model, a) for a in ATTRIBUTES if hasattr(model, a)}}, path)
    return path


def load(name: str) -> DigitsCNN:
    saved = torch.load(_path(name), weights_only=True)
    model = DigitsCNN()
    model.load_state_dict(saved["state_dict"])
    for attribute, value in saved["attributes"].items():
        setattr(model, attribute, value)
    return model.eval()


def digits_qat() -> DigitsCNN:
    """The digits CNN after QAT and `convert` (weights on the learned grid, `edgeport_qparams`)."""
    return load("digits_qat")


def digits_binary() -> DigitsCNN:
    """The digits CNN with binary hidden layers after `convert_lowbit`."""
    return load("digits_binary")
