"""The recipe: how to turn the float model into the shipped one, decided once for all targets.

`Recipe` is what users write (flags, `[recipe]` in edgeport.toml, the Python API). Its
quantization settings become one typed scheme config (`recipe.scheme`, see `edgeport.schemes`),
which planners and exporters dispatch on; its overrides say which layers take another precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from edgeport.errors import InputError
from edgeport.schemes import CALIBRATION_METHODS, LAYER_PRECISIONS, SCHEMES, Scheme, make_scheme

PALETTE_BITS = (1, 2, 4, 6, 8)
OVERRIDE_LEVELS = ("op_type", "layer")


def _precision(value, where: str) -> str:
    """An override value: `float` (or None / "none", TOML has no null), `int8` or `int16`."""
    value = "float" if value is None or value == "none" else value
    if value not in LAYER_PRECISIONS:
        raise InputError(f"override {where}: precision must be one of {', '.join(LAYER_PRECISIONS)}, got {value!r}")
    return value


FALLBACKS = ("none", "auto")
MAX_CALIB_SAMPLES = 1_000_000  # calibration statistics converge long before; more is a typo


@dataclass(frozen=True)
class Overrides:
    """Per-layer precisions layered over the recipe's scheme: global, then op type, then layer name
    (the most specific wins; among layer names the longest matching path). `float` leaves a layer
    unquantized; `int16` / `int8` set the activation precision of a layer in a static scheme.

    Attributes:
        op_type: (ONNX op type, precision) pairs, e.g. (("Softmax", "float"),).
        layer: (layer, precision) pairs; a layer is a PyTorch module path (`features.3`, covering
            its submodules) or an ONNX node name.
    """

    op_type: tuple[tuple[str, str], ...] = ()
    layer: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: "Overrides | Mapping | None") -> "Overrides":
        """From {"op_type": {"Conv": "float"}, "layer": {"features.3": "int16"}} (None = float)."""
        if value is None:
            return cls()
        if isinstance(value, Overrides):
            return value
        if not isinstance(value, Mapping):
            raise InputError(f"overrides must be a table of op_type / layer tables, got {value!r}")
        unknown = set(value) - set(OVERRIDE_LEVELS)
        if unknown:
            raise InputError(f"overrides: unknown level(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(OVERRIDE_LEVELS)})")
        levels = {}
        for level in OVERRIDE_LEVELS:
            entries = value.get(level) or {}
            if not isinstance(entries, Mapping):
                raise InputError(f"overrides.{level} must be a table of name = precision")
            levels[level] = tuple((str(k), _precision(v, f"{level} '{k}'")) for k, v in entries.items())
        return cls(**levels)

    def __bool__(self) -> bool:
        return bool(self.op_type or self.layer)

    def precisions(self) -> set[str]:
        return {p for _, p in (*self.op_type, *self.layer)}

    def to_dict(self) -> dict:
        return {level: dict(getattr(self, level)) for level in OVERRIDE_LEVELS if getattr(self, level)}


@dataclass(frozen=True)
class Recipe:
    """Target-independent export recipe.

    Attributes:
        quantize: The scheme's name: `none` (fp32), `fp16`, `dynamic-int8` (int8 weights,
            activations quantized at run time, MatMul/Gemm layers), `weight-only-int8` (int8
            weights of every Conv/Gemm/MatMul, float activations), `int8` (static: int8 weights
            and activations from calibration) or `int16x8` (static: int8 weights, int16
            symmetric activations). See `edgeport.schemes`.
        per_channel: int8 weight scales per output channel (default) or one per tensor.
        calibration: How activation ranges are chosen: `minmax`, `percentile` or `mse`.
        percentile: Central mass kept by `percentile` calibration, in percent.
        block_size: int4 weights (`weight-only-int4`): weights per scale along a linear layer's
            input dimension (32, 64, 128, 256; 0 = one scale per output channel).
        embedding_bits: Embedding tables (a Gather's / `nn.Embedding`'s float table) are stored
            with one scale per row at 8 bits under every integer-weight recipe; 4 (with
            `weight-only-int4`) halves them again, at a measured cost in accuracy.
        keep_float: Shorthand for float overrides: PyTorch module paths (`classifier.2`), ONNX
            node names, or ONNX op types (`Softmax`).
        overrides: Per-layer precisions by op type and layer name (`Overrides`, or a mapping
            {"op_type": {...}, "layer": {...}}).
        calib_samples: At most this many calibration samples are used.
        palettize: k-means weight sharing with 2^bits shared values per layer (1, 2, 4, 6, 8),
            applied to Conv/Gemm/MatMul weights before any quantization.
        prune: Fraction of each such weight set to zero by magnitude (0 < prune < 1).
        prune_channels: Fraction of the output channels (neurons) of each Conv/Linear layer removed
            by L1 norm, with the layers that consume them shrunk to match (structured pruning:
            a smaller, faster model on every target). PyTorch sources only; the layer that produces
            the model's output keeps its channels.
        fallback: `none`, or `auto`: layers whose quantization error is largest (measured) move to
            float one at a time until the numeric budgets (min_cosine, min_sqnr, min_agreement)
            hold on the calibration data (`edgeport.quantizers.fallback`).
        equalize: Cross-layer equalization of consecutive linear layers before quantization (the
            float function is kept; per-tensor and depthwise weights lose less). See
            `edgeport.equalize`.
        smoothquant: SmoothQuant's migration strength α (0 < α < 1, usually 0.5): outlier
            activation channels entering transformer linears are scaled down, their weight rows
            up. Needs calibration data.
        bias_correction: Correct each quantized layer's float bias for the mean shift its rounded
            weights cause on the calibration data.
    """

    quantize: str = "none"
    per_channel: bool = True
    calibration: str = "minmax"
    percentile: float = 99.99
    block_size: int = 32
    embedding_bits: int = 8
    keep_float: tuple[str, ...] = field(default_factory=tuple)
    calib_samples: int = 1000
    palettize: int | None = None
    prune: float | None = None
    prune_channels: float | None = None
    overrides: Overrides = field(default_factory=Overrides)
    fallback: str = "none"
    equalize: bool = False
    smoothquant: float | None = None
    bias_correction: bool = False

    def __post_init__(self):
        if self.quantize not in SCHEMES:
            raise InputError(f"unknown recipe '{self.quantize}' (known: {', '.join(SCHEMES.names())})")
        if self.calibration not in CALIBRATION_METHODS:
            raise InputError(f"unknown calibration method '{self.calibration}' "
                             f"(known: {', '.join(CALIBRATION_METHODS)})")
        if not 50.0 < self.percentile <= 100.0:
            raise InputError(f"percentile must be in (50, 100], got {self.percentile}")
        if isinstance(self.calib_samples, bool) or not isinstance(self.calib_samples, int) \
                or not 1 <= self.calib_samples <= MAX_CALIB_SAMPLES:
            raise InputError(f"calib_samples must be a whole number from 1 to {MAX_CALIB_SAMPLES:,}, "
                             f"got {self.calib_samples!r}")
        if self.palettize is not None and self.palettize not in PALETTE_BITS:
            raise InputError(f"palettize must be one of {', '.join(map(str, PALETTE_BITS))} bits, got {self.palettize}")
        if self.prune is not None and not 0.0 < self.prune < 1.0:
            raise InputError(f"prune must be a fraction between 0 and 1 (e.g. 0.5), got {self.prune}")
        if self.prune_channels is not None and not 0.0 < self.prune_channels < 1.0:
            raise InputError(f"prune_channels must be a fraction between 0 and 1 (e.g. 0.5), got {self.prune_channels}")
        if self.fallback not in FALLBACKS:
            raise InputError(f"fallback must be one of {', '.join(FALLBACKS)}, got {self.fallback!r}")
        for flag in ("equalize", "bias_correction"):
            if not isinstance(getattr(self, flag), bool):
                raise InputError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.smoothquant is not None and (isinstance(self.smoothquant, bool)
                                             or not isinstance(self.smoothquant, (int, float))
                                             or not 0.0 < self.smoothquant < 1.0):
            raise InputError(f"smoothquant is the migration strength alpha, between 0 and 1 (e.g. 0.5), "
                             f"got {self.smoothquant!r}")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        object.__setattr__(self, "overrides", Overrides.parse(self.overrides))
        object.__setattr__(self, "scheme", make_scheme(self.quantize, self.per_channel, self.calibration,
                                                       self.percentile, self.block_size))
        if self.fallback != "none" and self.scheme.weight_bits > 8:
            raise InputError(f"--fallback {self.fallback} moves quantized layers back to float: the "
                             f"'{self.quantize}' recipe quantizes nothing (use int8, int16x8, dynamic-int8, ...)")
        if self.embedding_bits not in (4, 8) or isinstance(self.embedding_bits, bool):
            raise InputError(f"embedding_bits must be 8 or 4, got {self.embedding_bits!r}")
        if self.embedding_bits == 4 and self.quantize != "weight-only-int4":
            raise InputError(f"embedding_bits 4 stores embedding tables as int4 rows: it goes with --quantize "
                             f"weight-only-int4, not '{self.quantize}'")
        if self.bias_correction and self.scheme.weight_bits > 8:
            raise InputError(f"bias_correction corrects the mean shift of rounded weights: the '{self.quantize}' "
                             "recipe rounds no weight to integers (use int8, int16x8, dynamic-int8, weight-only-int4, ...)")
        mixed = self.overrides.precisions() - {"float"}
        if mixed and not self.scheme.calibrated:
            raise InputError(f"override to {' / '.join(sorted(mixed))} needs a static scheme (--quantize int8 or "
                             f"int16x8): '{self.quantize}' has no calibrated activations to set per layer")

    scheme: Scheme = field(init=False, repr=False, compare=False)

    @property
    def needs_calibration(self) -> bool:
        return self.scheme.calibrated

    @property
    def float_overrides(self) -> bool:
        """Whether some layer is asked to stay float (keep_float or a float override), or may be
        moved there by `fallback`."""
        return bool(self.keep_float) or "float" in self.overrides.precisions() or self.fallback != "none"

    def mixed_precision(self) -> set[str]:
        """Activation precisions that overrides ask for besides the scheme's own ("int8", "int16")."""
        own = f"int{self.scheme.activation_bits}"
        return self.overrides.precisions() - {"float", own}

    def describe(self) -> str:
        extras = (["cross-layer equalization"] if self.equalize else []) + \
            ([f"smoothquant alpha {self.smoothquant:g}"] if self.smoothquant is not None else []) + \
            ([f"{self.prune_channels:.0%} of channels removed"] if self.prune_channels else []) + \
            ([f"pruned {self.prune:.0%}"] if self.prune else []) + \
            ([f"palettized {self.palettize}-bit"] if self.palettize else []) + \
            ([f"{len(self.overrides.op_type) + len(self.overrides.layer)} layer override(s)"] if self.overrides else []) + \
            ([f"fallback {self.fallback}"] if self.fallback != "none" else []) + \
            (["bias correction"] if self.bias_correction else []) + \
            (["int4 embedding rows"] if self.embedding_bits == 4 else [])
        return " + ".join([self.scheme.describe()] + extras)

    def to_dict(self) -> dict:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in ("scheme", "overrides")}
        data["keep_float"] = list(self.keep_float)
        if self.overrides:
            data["overrides"] = self.overrides.to_dict()
        return data
