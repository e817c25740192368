"""Quantization schemes as typed configs: one frozen dataclass per scheme.

A scheme says which numbers a recipe stores and computes with (weights, activations, their bit
widths and granularity). It is validated when it is made, with real exceptions. Everything else
keys on its type:

- the planner that computes its numbers is registered for the config type
  (`edgeport.quantizers.PLANNERS`);
- every exporter declares a table {config type: handler or refusal} (`Exporter.schemes`), so
  a format that cannot hold a scheme refuses it before any work, with the reason.

Adding a scheme is one class here, one planner, and one row per exporter (CONTRIBUTING.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edgeport.errors import InputError
from edgeport.registry import Registry

CALIBRATION_METHODS = ("minmax", "percentile", "mse", "auto")  # auto: the one whose model measures best


@dataclass(frozen=True)
class Scheme:
    """Base of every scheme config.

    Class attributes (what the scheme is, the same for every instance):
        name: The recipe name (`--quantize NAME`, `[recipe] quantize = "NAME"`).
        summary: One line for `--help`.
        weight_bits: Bits of a stored weight (32 float, 16 half, 8 integer).
        activation_bits: Bits of an activation at run time (32 = float compute).
        calibrated: Whether activation ranges come from calibration data.
        parity_floor: The least cosine similarity with the float model that a correct artifact
            of this scheme reaches on any model; below it the export fails its self-check
            (`edgeport.budgets.self_checks`). Set low on purpose: it catches broken numbers
            (NaN calibration, corrupt scales), not a few points of quantization error.

    Attributes:
        per_channel: Integer weight scales per output channel (else one per tensor). Float
            schemes ignore it.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    weight_bits: ClassVar[int] = 32
    activation_bits: ClassVar[int] = 32
    calibrated: ClassVar[bool] = False
    parity_floor: ClassVar[float] = 0.99

    per_channel: bool = True

    def __post_init__(self):
        if not isinstance(self.per_channel, bool):
            raise InputError(f"per_channel must be true or false, got {self.per_channel!r}")

    @property
    def int8_weights(self) -> bool:
        return self.weight_bits == 8

    def describe(self) -> str:
        """How the report names this scheme, e.g. "int8 static (per-channel weights, minmax calibration)"."""
        return self.name

    def granularity(self) -> str:
        return "per-channel" if self.per_channel else "per-tensor"


@dataclass(frozen=True)
class Float32(Scheme):
    name: ClassVar[str] = "none"
    summary: ClassVar[str] = "fp32, as trained"

    def describe(self) -> str:
        return "fp32"


@dataclass(frozen=True)
class Fp16(Scheme):
    name: ClassVar[str] = "fp16"
    summary: ClassVar[str] = "fp16 weights and compute, float32 inputs and outputs"
    weight_bits: ClassVar[int] = 16
    activation_bits: ClassVar[int] = 16


@dataclass(frozen=True)
class DynamicInt8(Scheme):
    name: ClassVar[str] = "dynamic-int8"
    summary: ClassVar[str] = "int8 MatMul/Gemm weights, activations quantized at run time"
    weight_bits: ClassVar[int] = 8
    parity_floor: ClassVar[float] = 0.9

    def describe(self) -> str:
        return f"dynamic int8 ({self.granularity()} weights)"


@dataclass(frozen=True)
class WeightOnlyInt8(Scheme):
    name: ClassVar[str] = "weight-only-int8"
    summary: ClassVar[str] = "int8 Conv/Gemm/MatMul weights, float activations and compute"
    weight_bits: ClassVar[int] = 8
    parity_floor: ClassVar[float] = 0.9

    def describe(self) -> str:
        return f"weight-only int8 ({self.granularity()} weights, float activations)"


INT4_BLOCK_SIZES = (0, 32, 64, 128, 256)  # 0: one scale per output channel


@dataclass(frozen=True)
class WeightOnlyInt4(Scheme):
    """int4 weights, symmetric in [-7, 7], with float activations.

    Attributes:
        block_size: Linear layers (MatMul / Gemm) get one scale per `block_size` consecutive
            weights along their input dimension (0: one per output channel); convolutions get
            one per output channel (no target has blocked int4 convolutions).
    """

    name: ClassVar[str] = "weight-only-int4"
    summary: ClassVar[str] = "int4 weights (blocks of 32 in linear layers), float activations"
    weight_bits: ClassVar[int] = 4
    parity_floor: ClassVar[float] = 0.8

    block_size: int = 32

    def __post_init__(self):
        super().__post_init__()
        if self.block_size not in INT4_BLOCK_SIZES:
            raise InputError(f"block_size must be one of {', '.join(map(str, INT4_BLOCK_SIZES))} "
                             f"(0: per output channel), got {self.block_size!r}")

    @property
    def int8_weights(self) -> bool:
        return True  # integer weights: the plan's numbers, embedding tables int8 per row

    def describe(self) -> str:
        blocks = f"blocks of {self.block_size}" if self.block_size else "per-channel"
        return f"weight-only int4 ({blocks} in linear layers, per-channel convs, float activations)"


@dataclass(frozen=True)
class Int8Static(Scheme):
    """Static int8: int8 weights and activations, activation ranges from calibration.

    Attributes:
        calibration: `minmax`, `percentile` or `mse`.
        percentile: Central mass kept by `percentile` calibration, in percent.
    """

    name: ClassVar[str] = "int8"
    summary: ClassVar[str] = "static int8 weights and activations (calibrated)"
    weight_bits: ClassVar[int] = 8
    activation_bits: ClassVar[int] = 8
    calibrated: ClassVar[bool] = True
    parity_floor: ClassVar[float] = 0.8

    calibration: str = "minmax"
    percentile: float = 99.99

    def __post_init__(self):
        super().__post_init__()
        if self.calibration not in CALIBRATION_METHODS:
            raise InputError(f"unknown calibration method '{self.calibration}' "
                             f"(known: {', '.join(CALIBRATION_METHODS)})")
        if not 50.0 < self.percentile <= 100.0:
            raise InputError(f"percentile must be in (50, 100], got {self.percentile}")

    def describe(self) -> str:
        return f"{self.name} static ({self.granularity()} weights, {self.calibration} calibration)"


@dataclass(frozen=True)
class Int16x8(Int8Static):
    """Static int16x8: int8 weights, int16 symmetric activations (calibrated)."""

    name: ClassVar[str] = "int16x8"
    summary: ClassVar[str] = "static: int16 symmetric activations, int8 weights"
    activation_bits: ClassVar[int] = 16


SCHEMES: Registry[type[Scheme]] = Registry("recipe")
for _scheme in (Float32, Fp16, DynamicInt8, Int8Static, Int16x8, WeightOnlyInt8, WeightOnlyInt4):
    SCHEMES.add(_scheme.name, _scheme)


def make_scheme(name: str, per_channel: bool = True, calibration: str = "minmax",
                percentile: float = 99.99, block_size: int = 32) -> Scheme:
    """The scheme config named `name` with the given settings (those it does not take are ignored)."""
    cls = SCHEMES.get(name)
    if issubclass(cls, Int8Static):
        return cls(per_channel=per_channel, calibration=calibration, percentile=percentile)
    if cls is WeightOnlyInt4:
        return cls(per_channel=per_channel, block_size=block_size)
    return cls(per_channel=per_channel)


# Per-layer precisions an override can ask for (`--override LAYER=float|int8|int16`).
LAYER_PRECISIONS = ("float", "int8", "int16")
