"""The digits sample trains quickly and reproduces the committed weights' accuracy."""

import numpy as np
import pytest

from conftest import EVAL, needs_torch


@pytest.mark.e2e
@needs_torch
def test_training_reaches_committed_accuracy():
    import torch

    from samples.digits.model import build
    from samples.digits.train import train

    model, accuracy = train()
    assert accuracy >= 0.97
    data = np.load(EVAL)
    with torch.no_grad():
        committed = float((build()(torch.from_numpy(data["x"])).argmax(1).numpy() == data["y"]).mean())
    assert accuracy == pytest.approx(committed, abs=0.01)


def test_committed_data_files_match_the_split():
    from samples.digits.data import calibration, evaluation

    x_test, y_test = evaluation()
    stored = np.load(EVAL)
    np.testing.assert_array_equal(stored["x"], x_test)
    np.testing.assert_array_equal(stored["y"], y_test)
    assert calibration().shape == (200, 1, 8, 8)
