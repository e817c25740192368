"""One configuration of a sweep (recipe x target): its outcome and the numbers the frontier needs,
taken from the export's report.json."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

OK, REFUSED, FAILED = "ok", "refused", "failed"


@dataclass
class Configuration:
    """What a sweep learned about one (recipe, target) pair.

    Attributes:
        recipe / target: Sweep recipe name and target name.
        status: `ok` (exported and checked), `refused` (the target's exporter cannot honor the
            recipe) or `failed` (an error; see `error`).
        error: The refusal or error message, one line.
        report: The export's report.json, relative to the sweep's output folder.
        size_bytes / alpha: Artifact size and float size / size (size check).
        latency_ms / latency_estimate: p50 at batch 1; `latency_estimate` when it is counted on an
            emulated core rather than timed (Cortex-M).
        accuracy / float_accuracy: With labeled eval data (accuracy check), fractions.
        agreement: Top-1 agreement with the float model (parity check), a fraction.
        weight_bytes: Weight bytes by storage kind (structure check).
        layer_bytes: Bytes per layer, for ONNX artifacts (initializers grouped by layer).
        not_measured: Check name -> why it did not run, for the checks the sweep reads.
        seconds: Wall time of the recipe's export (all its targets together).
        traceback: Last lines of the traceback of an unexpected error (JSON only).
    """

    recipe: str
    target: str
    status: str
    error: str = ""
    report: str = ""
    size_bytes: int | None = None
    alpha: float | None = None
    latency_ms: float | None = None
    latency_estimate: bool = False
    accuracy: float | None = None
    float_accuracy: float | None = None
    agreement: float | None = None
    weight_bytes: dict[str, int] = field(default_factory=dict)
    layer_bytes: dict[str, int] = field(default_factory=dict)
    not_measured: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    traceback: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


READ_CHECKS = ("size", "latency", "accuracy", "parity", "structure")


def from_target_report(recipe: str, target: dict, report: str, seconds: float | None = None) -> Configuration:
    """The configuration measured by one target entry of a report.json (`TargetReport.to_dict()`)."""
    checks = target.get("checks", {})
    values = {name: c for name, c in checks.items() if c.get("status") == "measured"}
    size, latency = values.get("size", {}), values.get("latency", {})
    accuracy, parity = values.get("accuracy", {}), values.get("parity", {})
    return Configuration(
        recipe, target["target"], OK, report=report, size_bytes=size.get("size_bytes"), alpha=size.get("alpha"),
        latency_ms=latency.get("p50_ms"), latency_estimate=bool(latency.get("estimate")),
        accuracy=accuracy.get("accuracy"), float_accuracy=accuracy.get("float_accuracy"),
        agreement=parity.get("top1_agreement"), weight_bytes=dict(values.get("structure", {}).get("weight_bytes", {})),
        not_measured={name: c.get("reason", "") for name, c in checks.items()
                      if name in READ_CHECKS and c.get("status") != "measured"},
        seconds=seconds)


_LAYER = re.compile(r"^(?P<layer>.+?)\.(weight|bias)(_|$)")


def layer_of(initializer: str, consumer: str | None = None) -> str:
    """The layer an ONNX initializer belongs to: the PyTorch module path in its name
    (`features.0.weight_quantized` -> `features.0`), else the node that uses it, else `other`."""
    match = _LAYER.match(initializer)
    if match:
        return match.group("layer")
    return consumer or "other"


def onnx_layer_bytes(path: str | Path) -> dict[str, int]:
    """Bytes of the weight initializers (rank >= 1) of an .onnx file, by layer (see `layer_of`).
    Scales, zero points and shapes of quantized layers count with their layer."""
    import numpy as np
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    consumers: dict[str, str] = {}
    dequantized: dict[str, str] = {}  # DequantizeLinear output -> its stored input
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            dequantized[node.output[0]] = node.input[0]
    for node in model.graph.node:
        if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            continue
        for name in node.input:
            consumers.setdefault(dequantized.get(name, name), node.name or node.op_type)
    sizes: dict[str, int] = {}
    for init in model.graph.initializer:
        if len(init.dims) < 1:
            continue
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        layer = layer_of(init.name, consumers.get(init.name))
        sizes[layer] = sizes.get(layer, 0) + int(np.prod(init.dims)) * itemsize
    return sizes
