"""`edgeport.toml`: the same settings as the command-line flags, in a file kept with the project.

    [export]
    source = "samples.digits.model:build"
    targets = ["onnx", "onnx-mobile"]
    out = "out/digits"
    calib = "samples/digits/calib.npz"
    eval = "samples/digits/eval.npz"
    input_shape = [1, 1, 8, 8]
    input_dtype = "float32"    # or by input name: { input_ids = "int64", attention_mask = "int64" }

    [recipe]
    quantize = "int8"          # none | fp16 | dynamic-int8 | weight-only-int8 | int8 | int16x8
    per_channel = true
    calibration = "minmax"     # minmax | percentile | mse
    keep_float = ["classifier.2", "Softmax"]   # shorthand for float overrides
    prune = 0.9                # zero 90% of each layer's weights (magnitude)
    palettize = 4              # k-means: 16 shared values per layer
    prune_channels = 0.5       # structured: remove half of each layer's channels
    fallback = "auto"          # move the noisiest layers to float until min_cosine / min_sqnr hold
    equalize = true            # cross-layer equalization (depthwise / per-tensor weights)
    smoothquant = 0.5          # transformer linears: move activation outliers into the weights
    bias_correction = true     # correct biases for the mean shift of rounded weights

    [recipe.op_type]           # layered overrides: global -> op type -> layer name
    Softmax = "float"          # float | int8 | int16 ("none" = float)

    [recipe.layer]
    "features.3" = "float"     # a PyTorch module path (and its submodules) or an ONNX node name

    [budgets]
    max_size = "100KB"
    max_latency = 2.0          # ms, p50 at batch 1
    min_agreement = 0.99
    min_cosine = 0.99          # worst output vs the float model (embeddings, detectors)
    min_sqnr = 30              # dB, worst output
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
from edgeport.targets.options import OPTION_SECTIONS, option_keys

SECTIONS = {
    "export": {"source", "targets", "out", "calib", "eval", "input_shape", "input_dtype", "keep_going"},
    "recipe": {"quantize", "per_channel", "calibration", "percentile", "block_size", "embedding_bits", "keep_float",
               "calib_samples", "palettize", "prune", "prune_channels", "fallback", "op_type", "layer", "equalize", "smoothquant",
               "bias_correction"},
    "budgets": set(BUDGET_KINDS),
    "checks": {"runs", "warmup", "threads", "batch_size", "layers"},
    **{section: option_keys(section) for section in OPTION_SECTIONS},
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
    for key, value in data.get("export", {}).items():
        _check_export_value(path, key, value)
    for key, value in data.get("budgets", {}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(f"{path}: [budgets] {key} must be a number or a string such as \"100KB\", "
                             f"not {_kind(value)}")
    config = {section: dict(data.get(section, {})) for section in SECTIONS}
    recipe = config["recipe"]
    levels = {level: recipe.pop(level) for level in ("op_type", "layer") if level in recipe}
    if levels:  # [recipe.op_type] / [recipe.layer] tables become the recipe's overrides
        recipe["overrides"] = levels
    return config


def _kind(value) -> str:
    return {bool: "true/false", dict: "a table", list: "a list", str: "a string"}.get(type(value), repr(value))


def _is_shape(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value))


def _check_export_value(path: Path, key: str, value) -> None:
    """[export] values have the types of their flags (a wrong type is the user's error, exit 2)."""
    if key == "keep_going":
        ok, want = isinstance(value, bool), "true or false"
    elif key == "input_dtype":
        ok = (isinstance(value, str) and value.strip() != "") or (
            isinstance(value, dict) and bool(value) and all(isinstance(v, str) for v in value.values()))
        want = 'a dtype such as "int64", or a table of them by input name'
    elif key in ("source", "out", "calib", "eval"):
        ok, want = isinstance(value, str) and value.strip() != "", "a non-empty string"
    elif key == "targets":
        ok = (isinstance(value, str) and value.strip() != "") or (
            isinstance(value, list) and bool(value) and all(isinstance(t, str) for t in value))
        want = 'a string or a list of strings, e.g. ["onnx", "android"]'
    else:  # input_shape: one shape, or one per input
        ok = _is_shape(value) or (isinstance(value, list) and bool(value) and all(_is_shape(v) for v in value))
        want = "a list of whole numbers >= 1 such as [1, 3, 224, 224], or a list of them (one per input)"
    if not ok:
        raise InputError(f"{path}: [export] {key} must be {want}, not {_kind(value)}")
