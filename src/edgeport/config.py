"""`edgeport.toml`: the same settings as the command-line flags, in a file kept with the project.

    [export]
    source = "samples.digits.model:build"
    targets = ["onnx", "onnx-mobile"]
    out = "out/digits"
    calib = "samples/digits/calib.npz"
    eval = "samples/digits/eval.npz"
    input_shape = [1, 1, 8, 8]

    [recipe]
    quantize = "int8"          # none | fp16 | dynamic-int8 | int8
    per_channel = true
    calibration = "minmax"     # minmax | percentile | mse
    keep_float = ["classifier.2", "Softmax"]
    prune = 0.9                # zero 90% of each layer's weights (magnitude)
    palettize = 4              # k-means: 16 shared values per layer
    prune_channels = 0.5       # structured: remove half of each layer's channels

    [budgets]
    max_size = "100KB"
    max_latency = 2.0          # ms, p50 at batch 1
    min_agreement = 0.99
    max_accuracy_drop = 0.5    # points

    [checks]
    runs = 100
    warmup = 10
    threads = 1

    [ios]
    deployment_target = "iOS17"  # iOS15 .. iOS18
    precision = "fp16"           # fp16 | fp32

    [android]
    io = "int"                   # int8 / int16x8 models: "int" or "float" input and output

    [browser]
    tfjs_weights = "uint8"       # recipe quantize=none only: float32 | float16 | uint8 | uint16

    [mcu]
    storage = "auto"             # weights in flash: auto (from the recipe) | dense | huffman
    decode = "kernel"            # compressed weights decoded on the fly (kernel) or once into RAM (init)

Command-line flags override the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from edgeport.budgets import BUDGET_KINDS
from edgeport.errors import InputError

SECTIONS = {
    "export": {"source", "targets", "out", "calib", "eval", "input_shape", "input_dtype"},
    "recipe": {"quantize", "per_channel", "calibration", "percentile", "keep_float", "calib_samples",
               "palettize", "prune", "prune_channels"},
    "budgets": set(BUDGET_KINDS),
    "checks": {"runs", "warmup", "threads", "batch_size"},
    "ios": {"deployment_target", "precision"},
    "android": {"io"},
    "browser": {"tfjs_weights"},
    "mcu": {"storage", "decode"},
}


def load_config(path: str | Path) -> dict[str, dict]:
    """Read and validate an edgeport.toml; unknown sections or keys are errors (typos fail loudly)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid TOML: {exc}") from None
    for section, values in data.items():
        if section not in SECTIONS:
            raise InputError(f"{path}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise InputError(f"{path}: '{section}' must be a [section]")
        unknown = set(values) - SECTIONS[section]
        if unknown:
            raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} in [{section}] "
                             f"(known: {', '.join(sorted(SECTIONS[section]))})")
    return {section: dict(data.get(section, {})) for section in SECTIONS}
