"""`QuantPlan`: every quantization number of a recipe, computed once and shared by all targets.

It is written next to the artifacts as `quant_params.json`; exporters apply it and checks read
the numbers back from each artifact to prove they were honored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ActivationParams:
    """int8 parameters of one activation: `range` is the calibrated range they encode,
    `observed` the raw min / max seen on the calibration data (other graphs of the same model
    find their tensors by it)."""

    scale: float
    zero_point: int
    range: tuple[float, float]
    observed: tuple[float, float] | None = None


@dataclass
class WeightParams:
    """Symmetric integer weight scales: one per slice along `axis` (None: one for the tensor), or
    with `block`, one per `block` values along `axis` (`scale` is then the flattened array of the
    weight's shape with `axis` shrunk to its block count, ONNX's blocked layout). `bits`: 8 or 4."""

    scale: list[float]
    zero_point: list[int]
    axis: int | None
    layer: str
    bits: int = 8
    block: int | None = None

    def scale_array(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float32)

    def rounded(self, weight: np.ndarray) -> np.ndarray:
        """`weight` as the artifact holds it: quantized with these scales and scaled back to float."""
        from edgeport.quantizers import qmath

        scales = self.scale_array()
        if self.bits == 4:
            shaped = scales.reshape(_blocked_shape(weight.shape, self))
            q = qmath.quantize_int4(weight, shaped, self.axis, self.block)
            full = qmath.expand_blocks(shaped, self.axis, self.block, weight.shape[self.axis]) if self.block \
                else shaped.reshape([-1 if d == self.axis else 1 for d in range(weight.ndim)])
            return (q.astype(np.float32) * full).astype(np.float32)
        if self.axis is None:
            return qmath.dequantize(qmath.quantize(weight, scales[0], 0), scales[0], 0)
        zero = np.zeros(len(scales), dtype=np.int32)
        return qmath.dequantize(qmath.quantize(weight, scales, zero, self.axis), scales, zero, self.axis)


def _blocked_shape(shape: tuple[int, ...], params: "WeightParams") -> list[int]:
    """The shape of a blocked weight's scales: the weight's, with the block axis shrunk to its
    block count (one per slice along `axis` without blocks)."""
    if not params.block:
        return [-1]
    return [-(-d // params.block) if i == params.axis else d for i, d in enumerate(shape)]


@dataclass
class QuantPlan:
    """Quantization parameters keyed by tensor names of the float ONNX graph.

    Attributes:
        scheme: Recipe scheme (`none`, `fp16`, `dynamic-int8`, `int8`).
        activations: Tensor name -> int8 scale / zero point (static int8 only).
        weights: Initializer name -> symmetric int8 scales along `axis` (None = per tensor).
        embeddings: Initializer name of an embedding table (the float data a Gather looks rows
            up in) -> symmetric int8 scales, one per row (`axis` 0): every int8-weight scheme
            stores these tables as int8 rows and scales the looked-up rows back to float.
        quantized_ops: ONNX op types the scheme quantizes.
        float_nodes: Node names kept in float by the recipe's float overrides (and `keep_float`).
        precisions: Node name -> activation precision ("int8" / "int16") where an override asks
            for another one than the scheme's (mixed precision).
        mixed_activations: Tensor name -> parameters in the other precision, for the inputs and
            outputs of the `precisions` nodes (a tensor between an int8 and an int16 node has
            both: the producer's type, converted for the consumers of the other one).
        calibration: Method, sample count and data source.
        compression: Initializer name -> pruning / palette applied to it before quantization
            ({"layer", "sparsity", "zeros", "palette"}).
        structure: What structured pruning removed before everything else:
            {"layers": {module path: [channels before, after]}, "params": [before, after]}.
        origin: Tensor name -> where its numbers came from, for those not computed by the
            recipe's rule: "qat" (learned in quantization-aware training), "binary" / "ternary"
            (a low-bit weight whose scale is its α, so its integers are ±1 or -1/0/+1).
        notes: What the report should say about the plan (one line each).
        fallback: What `--fallback auto` measured and moved (`edgeport.fallback.Fallback`), if asked.
        rewrites: What the float-model rewrites before the plan changed (`edgeport.equalize`):
            {"equalize": {...}, "smoothquant": {...}, "bias_correction": {...}}, those asked for.
    """

    scheme: str
    activations: dict[str, ActivationParams] = field(default_factory=dict)
    weights: dict[str, WeightParams] = field(default_factory=dict)
    embeddings: dict[str, WeightParams] = field(default_factory=dict)
    quantized_ops: list[str] = field(default_factory=list)
    float_nodes: list[str] = field(default_factory=list)
    precisions: dict[str, str] = field(default_factory=dict)
    mixed_activations: dict[str, ActivationParams] = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    compression: dict[str, dict] = field(default_factory=dict)
    structure: dict = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fallback: dict = field(default_factory=dict)
    rewrites: dict = field(default_factory=dict)

    def activation_matching(self, lo: float, hi: float, by: str = "range",
                            tolerance: float = 1e-5) -> ActivationParams | None:
        """The planned parameters of the activation whose `by` range ("range" or "observed")
        equals (lo, hi) within a relative `tolerance`; None unless exactly one parameter set fits.

        Other graphs of the same model (Core ML, PT2E) do not share ONNX tensor names; the same
        tensor computed on the same calibration data has the same range, which finds it.
        """
        def close(a: float, b: float) -> bool:
            return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))

        found = {}
        for params in self.activations.values():
            span = getattr(params, by)
            if span is not None and close(span[0], lo) and close(span[1], hi):
                found[(params.scale, params.zero_point)] = params
        return next(iter(found.values())) if len(found) == 1 else None

    def to_json(self) -> str:
        data = {
            "scheme": self.scheme,
            "quantized_ops": self.quantized_ops,
            "float_nodes": self.float_nodes,
            **({"precisions": self.precisions,
                "mixed_activations": {k: _activation_json(v) for k, v in self.mixed_activations.items()}}
               if self.precisions else {}),
            "calibration": self.calibration,
            "compression": self.compression,
            "structure": self.structure,
            "origin": self.origin,
            "notes": self.notes,
            **({"fallback": self.fallback} if self.fallback else {}),
            **({"rewrites": self.rewrites} if self.rewrites else {}),
            "activations": {k: _activation_json(v) for k, v in self.activations.items()},
            "weights": {k: _weight_json(v) for k, v in self.weights.items()},
            **({"embeddings": {k: _weight_json(v) for k, v in self.embeddings.items()}} if self.embeddings else {}),
        }
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "QuantPlan":
        data = json.loads(text)
        return cls(
            scheme=data["scheme"], quantized_ops=data["quantized_ops"], float_nodes=data["float_nodes"],
            precisions=data.get("precisions", {}), calibration=data["calibration"], compression=data.get("compression", {}),
            structure=data.get("structure", {}), origin=data.get("origin", {}), notes=data.get("notes", []),
            fallback=data.get("fallback", {}), rewrites=data.get("rewrites", {}),
            activations={k: _activation_params(v) for k, v in data["activations"].items()},
            mixed_activations={k: _activation_params(v) for k, v in data.get("mixed_activations", {}).items()},
            weights={k: _weight_params(v) for k, v in data["weights"].items()},
            embeddings={k: _weight_params(v) for k, v in data.get("embeddings", {}).items()})


def _weight_json(params: WeightParams) -> dict:
    extra = {"bits": params.bits, "block": params.block} if params.bits != 8 else {}
    return {"axis": params.axis, "layer": params.layer, **extra, "scale": [float(s) for s in params.scale],
            "zero_point": [int(z) for z in params.zero_point]}


def _weight_params(data: dict) -> WeightParams:
    return WeightParams(data["scale"], data["zero_point"], data["axis"], data["layer"], data.get("bits", 8),
                        data.get("block"))


def _activation_json(params: ActivationParams) -> dict:
    return {"scale": float(params.scale), "zero_point": int(params.zero_point),
            "range": [float(params.range[0]), float(params.range[1])],
            "observed": None if params.observed is None else [float(x) for x in params.observed]}


def _activation_params(data: dict) -> ActivationParams:
    return ActivationParams(data["scale"], data["zero_point"], tuple(data["range"]),
                            tuple(data["observed"]) if data.get("observed") else None)


def embedding_note(plan: QuantPlan) -> str:
    """The report line for the plan's embedding tables (int8 rows, or int4 under an int4 recipe)."""
    rows = sum(len(w.scale) for w in plan.embeddings.values())
    names = ", ".join(sorted({w.layer for w in plan.embeddings.values()}))
    bits = "/".join(sorted({f"int{w.bits}" for w in plan.embeddings.values()}))
    return (f"embedding tables {bits}, one scale per row ({len(plan.embeddings)} tables, {rows} rows: {names}); "
            "stored on every target")
