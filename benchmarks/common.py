"""What every benchmark shares: run from the repository root, quiet, on the same two models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
os.environ.setdefault("EDGEPORT_QUIET", "1")

MODELS = {
    "digits CNN": dict(source="samples.digits.model:build", calib="samples/digits/calib.npz",
                       eval="samples/digits/eval.npz"),
    "MobileNetV2-0.35 96x96": dict(source="samples.mobilenet.model:build",
                                   calib="samples.mobilenet.model:calibration", eval=None),
}
