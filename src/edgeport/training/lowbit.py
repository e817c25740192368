"""Binary and ternary layers for PyTorch: training with latent float weights, then conversion.

- Binary weights (BinaryConnect / BWN, Rastegari et al. 2016, "XNOR-Net"): w ≈ α_c · sign(w),
  α_c = mean |W| of output channel c.
- Ternary weights (TWN, Li et al. 2016): w ≈ α_c · t, t in {-1, 0, +1}, threshold
  Δ_c = 0.7 · mean |W_c|, α_c = mean of |W_c| over |W_c| > Δ_c.
- Binary activations (XNOR-Net): the input of a binary layer is replaced by its sign. XNOR-Net's
  per-position input scale K (the mean |x| over the kernel window) is left out: it costs a
  convolution of its own at inference and matters little when batch norm precedes the layer,
  as it should. Put batch norm (not ReLU) in front of such a layer: the sign of a ReLU output
  is always +1 (sign(0) = +1 here), which carries no information.

Training keeps the float weights ("latent" weights) and uses the straight-through estimator
clipped to |w| <= 1 (BinaryNet, Courbariaux et al. 2016) for the sign and the ternary step;
α_c stays differentiable, which gives XNOR-Net's weight gradient. `convert_lowbit` then writes
plain nn.Conv2d / nn.Linear layers whose weights are exactly α_c · {±1} (or α_c · {-1, 0, +1}),
with a `Sign` module in front of layers that take binary inputs.

By default the first and last Conv/Linear layers are not made low-bit (they are left in float,
for int8 at export): they hold few weights and cost much accuracy when binarized.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from edgeport.registry import Registry
from edgeport.training.qat import along, base_layer_type, check_paths_exist, covered, layer_like, replace_module

ACTIVATIONS = (None, "binary")
TERNARY_THRESHOLD = 0.7  # Δ = 0.7 · mean |W| (Li et al. 2016, eq. 9: the approximate optimum)
LAYER_TYPES = (nn.Conv2d, nn.Linear)


# ------------------------------------------------------------------ pure functions

def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1; gradient 1 where |x| <= 1 and 0 elsewhere (clipped STE).

    The value is exactly ±1: the gradient rides on `c - c.detach()`, which is exactly zero.
    """
    clipped = torch.clamp(x, -1.0, 1.0)
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype) + (clipped - clipped.detach())


def binary_activation(x: torch.Tensor) -> torch.Tensor:
    """Binary activation (BinaryNet / XNOR-Net): sign(x) in {-1, +1} (sign(0) = +1), with the
    straight-through gradient clipped to |x| <= 1."""
    return sign_ste(x)


def _reduce_dims(w: torch.Tensor, axis: int) -> list[int]:
    axis = axis % w.ndim
    return [d for d in range(w.ndim) if d != axis]


def binarize(w: torch.Tensor, axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary weights: (sign(w) in {-1, +1} with sign(0) = +1, α = mean |W| per slice along `axis`).

    α has shape [w.shape[axis]]; α_c · sign(w_c) is the best binary approximation of slice c in
    the L2 sense (XNOR-Net, eq. 4). The signs carry the clipped straight-through gradient and α
    its ordinary one, so `α · sign` trained with autograd gets XNOR-Net's weight gradient.
    """
    return sign_ste(w), w.abs().mean(dim=_reduce_dims(w, axis))


def ternarize(w: torch.Tensor, axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ternary weights (TWN): (t in {-1, 0, +1}, α per slice along `axis`).

    Δ_c = 0.7 · mean |W_c|; t = sign(w) where |w| > Δ_c, else 0; α_c = mean of |W_c| over
    |W_c| > Δ_c (0 for a slice with no such weight, e.g. an all-zero channel). The threshold is
    not differentiated; t carries the clipped straight-through gradient and α its ordinary one.
    """
    dims = _reduce_dims(w, axis)
    magnitude = w.abs()
    delta = TERNARY_THRESHOLD * magnitude.detach().mean(dim=dims, keepdim=True)
    mask = (magnitude.detach() > delta).to(w.dtype)
    count = mask.sum(dim=dims)
    alpha = (magnitude * mask).sum(dim=dims) / count.clamp_min(1.0)
    clipped = torch.clamp(w, -1.0, 1.0)
    ternary = (torch.sign(w.detach()) * mask) + (clipped - clipped.detach())
    return ternary, alpha


def lowbit_weight(w: torch.Tensor, kind: str) -> torch.Tensor:
    """α_c · values of `w` for the registered weight scheme `kind` (output channels on axis 0)."""
    values, alpha = WEIGHT_SCHEMES.get(kind)(w, 0)
    return along(alpha, 0, w.ndim) * values


# ------------------------------------------------------------------ configuration

@dataclass(frozen=True)
class LowBitConfig:
    """Which layers `prepare_lowbit` makes low-bit, and how.

    Attributes:
        weights: Weight scheme: "binary" or "ternary" (the names in `WEIGHT_SCHEMES`).
        activations: None (float inputs) or "binary" (the inputs of the low-bit layers are
            binarized, XNOR-Net style).
        keep: Conv/Linear layers left in float (for int8 at export): module paths (a path
            also covers the modules below it), and "first" / "last" for the first and last
            Conv2d/Linear in module registration order (the forward order for nn.Sequential
            models). `()` makes every Conv2d/Linear low-bit.
    """

    weights: str = "binary"
    activations: str | None = None
    keep: tuple[str, ...] = ("first", "last")

    def __post_init__(self):
        if self.weights not in WEIGHT_SCHEMES:
            raise ValueError(f"unknown low-bit weight scheme {self.weights!r} "
                             f"(known: {', '.join(WEIGHT_SCHEMES.names())})")
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"activations must be None or 'binary', got {self.activations!r}")
        if isinstance(self.keep, str):
            raise TypeError(f"keep must be a tuple of module paths, got the string {self.keep!r}")
        object.__setattr__(self, "keep", tuple(self.keep))


# ------------------------------------------------------------------ modules

class Sign(nn.Module):
    """sign(x) in {-1, +1} as floats, sign(0) = +1. Plain ops only (exports to ONNX as
    GreaterOrEqual + Where); inference only, it has no useful gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class LowBitConv2d(nn.Conv2d):
    """nn.Conv2d computing with α_c · quantized latent weights (and, optionally, sign(input))."""

    kind: ClassVar[str]
    binary_input: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = binary_activation(x) if self.binary_input else x
        return self._conv_forward(x, lowbit_weight(self.weight, self.kind), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, binary_input={self.binary_input}"


class LowBitLinear(nn.Linear):
    """nn.Linear computing with α_c · quantized latent weights (and, optionally, sign(input))."""

    kind: ClassVar[str]
    binary_input: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = binary_activation(x) if self.binary_input else x
        return F.linear(x, lowbit_weight(self.weight, self.kind), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, binary_input={self.binary_input}"


class BinaryConv2d(LowBitConv2d):
    kind = "binary"


class BinaryLinear(LowBitLinear):
    kind = "binary"


class TernaryConv2d(LowBitConv2d):
    kind = "ternary"


class TernaryLinear(LowBitLinear):
    kind = "ternary"


# scheme name -> pure weight function (w, axis) -> (values, α)
WEIGHT_SCHEMES: Registry[Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]] = \
    Registry("low-bit weight scheme")
WEIGHT_SCHEMES.add("binary", binarize)
WEIGHT_SCHEMES.add("ternary", ternarize)

# (scheme, float layer type) -> training layer type
LOWBIT_LAYERS = {
    ("binary", nn.Conv2d): BinaryConv2d, ("binary", nn.Linear): BinaryLinear,
    ("ternary", nn.Conv2d): TernaryConv2d, ("ternary", nn.Linear): TernaryLinear,
}


# ------------------------------------------------------------------ public API

def lowbit_layer_paths(model: nn.Module, keep: tuple[str, ...]) -> list[str]:
    """Paths of the Conv2d/Linear layers of `model` that `keep` does not keep in float."""
    layers = [path for path, m in model.named_modules() if type(m) in LAYER_TYPES]
    kept = set()
    if layers and "first" in keep:
        kept.add(layers[0])
    if layers and "last" in keep:
        kept.add(layers[-1])
    paths = tuple(p for p in keep if p not in ("first", "last"))
    return [p for p in layers if p not in kept and not covered(p, paths)]


def prepare_lowbit(model: nn.Module, config: LowBitConfig) -> nn.Module:
    """A deep copy of `model` whose chosen Conv2d/Linear layers are binary or ternary.

    Each nn.Conv2d / nn.Linear (exactly those types, not subclasses) not kept by `config.keep`
    becomes a `BinaryConv2d` / `BinaryLinear` (or `TernaryConv2d` / `TernaryLinear`) with the
    same parameters (the latent float weights), the same parameter paths, and `binary_input` set
    when `config.activations == "binary"`.

    Args:
        model: The float model (usually trained); it is not modified.
        config: Weight scheme, activation scheme and the layers kept in float.

    Returns:
        The prepared copy, in the training mode `model` was in.
    """
    check_paths_exist(model, tuple(p for p in config.keep if p not in ("first", "last")), "LowBitConfig.keep")
    prepared = copy.deepcopy(model)
    for path in lowbit_layer_paths(prepared, config.keep):
        layer = prepared.get_submodule(path)
        new = layer_like(layer, LOWBIT_LAYERS[config.weights, type(layer)])
        new.binary_input = config.activations == "binary"
        prepared = replace_module(prepared, path, new)
    return prepared


def convert_lowbit(model: nn.Module) -> nn.Module:
    """A plain float copy of a low-bit model, with weights exactly α_c · {±1} or α_c · {-1, 0, +1}.

    Every low-bit layer becomes an nn.Conv2d / nn.Linear holding `α_c · values` (computed once,
    as in the prepared model's forward pass, so the outputs match it); a layer with binary inputs
    becomes `nn.Sequential(Sign(), layer)`. The numbers are attached as
    `converted.edgeport_lowbit`::

        {
          "features.2.weight":   {"kind": "binary",  "alpha": [a_0, a_1, ...], "axis": 0,
                                  "binary_input": False},
          "classifier.1.1.weight": {"kind": "ternary", "alpha": [...], "axis": 0,
                                    "binary_input": True},   # layer behind a Sign: path + ".1"
        }

    Keys are parameter paths in the converted model; "alpha" holds the float32 α_c per output
    channel (axis 0), so weight / α_c gives exactly the ±1 (or -1/0/+1) values, and a channel with
    α_c = 0 is all zeros.

    Args:
        model: A model returned by `prepare_lowbit` (possibly trained).

    Returns:
        The converted copy, in eval mode.
    """
    converted = copy.deepcopy(model)
    record = {}
    for path, layer in list(converted.named_modules()):
        if not isinstance(layer, (LowBitConv2d, LowBitLinear)):
            continue
        with torch.no_grad():
            values, alpha = WEIGHT_SCHEMES.get(layer.kind)(layer.weight, 0)
            weight = along(alpha, 0, layer.weight.ndim) * values
        plain = layer_like(layer, base_layer_type(layer), weight=weight.detach().clone())
        if layer.binary_input:
            plain = nn.Sequential(Sign(), plain)
        converted = replace_module(converted, path, plain)
        prefix = f"{path}." if path else ""
        key = f"{prefix}1.weight" if layer.binary_input else f"{prefix}weight"
        record[key] = {"kind": layer.kind, "alpha": [float(a) for a in alpha], "axis": 0,
                       "binary_input": bool(layer.binary_input)}
    if not record:
        raise ValueError("convert_lowbit: the model has no low-bit layers (was it made by prepare_lowbit?)")
    converted.edgeport_lowbit = record
    return converted.eval()
