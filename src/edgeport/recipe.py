"""The recipe: how to turn the float model into the shipped one, decided once for all targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeport.errors import InputError

SCHEMES = ("none", "fp16", "dynamic-int8", "int8", "int16x8")
CALIBRATION_METHODS = ("minmax", "percentile", "mse")
PALETTE_BITS = (1, 2, 4, 6, 8)


@dataclass(frozen=True)
class Recipe:
    """Target-independent export recipe.

    Attributes:
        quantize: `none` (fp32), `fp16`, `dynamic-int8` (int8 weights, activations quantized at
            run time, MatMul/Gemm layers), `int8` (static: int8 weights and activations from
            calibration) or `int16x8` (static: int8 weights, int16 symmetric activations).
        per_channel: int8 weight scales per output channel (default) or one per tensor.
        calibration: How activation ranges are chosen: `minmax`, `percentile` or `mse`.
        percentile: Central mass kept by `percentile` calibration, in percent.
        keep_float: Layers left in float: PyTorch module paths (`classifier.2`), ONNX node
            names, or ONNX op types (`Softmax`).
        calib_samples: At most this many calibration samples are used.
        palettize: k-means weight sharing with 2^bits shared values per layer (1, 2, 4, 6, 8),
            applied to Conv/Gemm/MatMul weights before any quantization.
        prune: Fraction of each such weight set to zero by magnitude (0 < prune < 1).
        prune_channels: Fraction of the output channels (neurons) of each Conv/Linear layer removed
            by L1 norm, with the layers that consume them shrunk to match (structured pruning:
            a smaller, faster model on every target). PyTorch sources only; the layer that produces
            the model's output keeps its channels.
    """

    quantize: str = "none"
    per_channel: bool = True
    calibration: str = "minmax"
    percentile: float = 99.99
    keep_float: tuple[str, ...] = field(default_factory=tuple)
    calib_samples: int = 1000
    palettize: int | None = None
    prune: float | None = None
    prune_channels: float | None = None

    def __post_init__(self):
        if self.quantize not in SCHEMES:
            raise InputError(f"unknown recipe '{self.quantize}' (known: {', '.join(SCHEMES)})")
        if self.calibration not in CALIBRATION_METHODS:
            raise InputError(f"unknown calibration method '{self.calibration}' "
                             f"(known: {', '.join(CALIBRATION_METHODS)})")
        if not 50.0 < self.percentile <= 100.0:
            raise InputError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.calib_samples < 1:
            raise InputError(f"calib_samples must be at least 1, got {self.calib_samples}")
        if self.palettize is not None and self.palettize not in PALETTE_BITS:
            raise InputError(f"palettize must be one of {', '.join(map(str, PALETTE_BITS))} bits, got {self.palettize}")
        if self.prune is not None and not 0.0 < self.prune < 1.0:
            raise InputError(f"prune must be a fraction between 0 and 1 (e.g. 0.5), got {self.prune}")
        if self.prune_channels is not None and not 0.0 < self.prune_channels < 1.0:
            raise InputError(f"prune_channels must be a fraction between 0 and 1 (e.g. 0.5), got {self.prune_channels}")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))

    @property
    def needs_calibration(self) -> bool:
        return self.quantize in ("int8", "int16x8")

    def describe(self) -> str:
        extras = ([f"{self.prune_channels:.0%} of channels removed"] if self.prune_channels else []) + \
            ([f"pruned {self.prune:.0%}"] if self.prune else []) + \
            ([f"palettized {self.palettize}-bit"] if self.palettize else [])
        return " + ".join([self._describe_quantize()] + extras)

    def _describe_quantize(self) -> str:
        if self.quantize in ("int8", "int16x8"):
            weights = "per-channel" if self.per_channel else "per-tensor"
            return f"{self.quantize} static ({weights} weights, {self.calibration} calibration)"
        if self.quantize == "dynamic-int8":
            return f"dynamic int8 ({'per-channel' if self.per_channel else 'per-tensor'} weights)"
        return {"none": "fp32", "fp16": "fp16"}[self.quantize]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["keep_float"] = list(self.keep_float)
        return data
