"""Quantization-aware training (QAT) for PyTorch models.

`prepare_qat` returns a copy of the model in which every `nn.Conv2d` / `nn.Linear` fake-quantizes
its weight (symmetric, per output channel by default) and its output (asymmetric, 2^bits levels).
Train it with any loop (`edgeport.training.distill.fit` is a small one), then `convert` gives a
plain float model whose weights lie exactly on the learned integer grid, together with the learned
scales and activation ranges (`model.edgeport_qparams`) so an exporter can reuse them instead of
recalibrating.

Rounding uses the straight-through estimator (Bengio et al. 2013): the forward pass rounds, the
backward pass treats rounding as the identity inside the clip range and as zero outside it.
With `learn_step=True` the step sizes are parameters trained by their own gradient (LSQ, Esser et
al. 2020), scaled by 1 / sqrt(N * Qp) as in the paper.

The fake quantizers are written here (about 80 lines) rather than taken from torch.ao.quantization:
its eager QAT flow needs QuantStub/DeQuantStub edits and qconfigs, converts to quantized kernels
rather than a float model on the grid, keeps the learnable (LSQ) fake quantizer private, and is
being deprecated in favour of torchao. The grid conventions match `edgeport.quantizers.qmath`
(weights in [-127, 127], round half to even), so the exporter's arithmetic sees the same numbers.

Batch norm is not folded: in a Conv -> BatchNorm model the quantized weights are the ones before
folding, so fold batch norm into the convolution before `prepare_qat` if the exported weights must
stay on the grid.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

QUANTIZABLE = (nn.Conv2d, nn.Linear)
EMA_MOMENTUM = 0.01  # torch's MovingAverageMinMaxObserver default averaging constant
MIN_SCALE = 1e-8  # keeps a learned step size positive (and the division defined)


# ------------------------------------------------------------------ pure functions

def round_ste(x: torch.Tensor) -> torch.Tensor:
    """`round(x)` (half to even) whose gradient is the identity (straight-through estimator).

    The value is exactly `round(x)`: `x - x.detach()` is exactly zero and only carries the gradient.
    """
    return torch.round(x).detach() + (x - x.detach())


def grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """`x` in the forward pass, `factor * gradient` in the backward pass (LSQ's gradient scale)."""
    scaled = x * factor
    return x.detach() + (scaled - scaled.detach())


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | float,
                  qmin: int, qmax: int) -> torch.Tensor:
    """`(clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale` with the STE.

    Gradients: with respect to `x`, 1 inside the clip range and 0 outside; with respect to
    `scale`, `round(v) - v` inside and `qmin - zero_point` / `qmax - zero_point` outside
    (v = x / scale + zero_point), which is LSQ's step-size gradient. `scale` and `zero_point`
    broadcast against `x`; the zero point is an integer (stored as float).
    """
    q = round_ste(torch.clamp(x / scale + zero_point, qmin, qmax))
    return (q - zero_point) * scale


def symmetric_scales(weight: torch.Tensor, qmax: int, axis: int | None = 0) -> torch.Tensor:
    """max|w| / qmax, one per slice along `axis` ([C]) or one for the tensor ([1]).

    An all-zero slice gets scale 1.0, as in `qmath.weight_scales`.
    """
    w = weight.detach().abs()
    peak = w.max().reshape(1) if axis is None else w.movedim(axis, 0).reshape(w.shape[axis], -1).amax(1)
    scales = peak / qmax
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def affine_qparams(lo: torch.Tensor, hi: torch.Tensor, qmin: int, qmax: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point (as float) mapping [lo, hi], widened to contain 0, onto
    [qmin, qmax]; 0.0 is exactly representable. An empty range gets scale 1, zero point qmin."""
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    scale = (hi - lo) / (qmax - qmin)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax)
    return scale, zero_point


def along(values: torch.Tensor, axis: int | None, ndim: int) -> torch.Tensor:
    """Reshape per-channel `values` ([C]) to broadcast along `axis` of an `ndim`-D tensor."""
    if axis is None:
        return values.reshape([1] * ndim)
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


# ------------------------------------------------------------------ configuration

@dataclass(frozen=True)
class QATConfig:
    """How `prepare_qat` fake-quantizes a model.

    Attributes:
        bits: Bit width of weights and activations (2..8). Weights use the symmetric grid
            [-(2^(bits-1) - 1), 2^(bits-1) - 1] ([-127, 127] for 8 bits), activations 2^bits levels.
        per_channel: One weight scale per output channel (axis 0) instead of one per tensor.
        learn_step: Learn the step sizes (LSQ). Weight steps start at max|w| / Qp (the
            post-training scale, since QAT here fine-tunes a trained model; the paper's
            2 mean|w| / sqrt(Qp) targets training from scratch), activation steps at the
            min/max range of the first batch; the activation zero point stays at its first value.
            Otherwise weight scales follow max|w| of the current weights and activation ranges
            follow an exponential moving average of the batch min/max during training.
        activations: Fake-quantize the output of each quantized layer.
        skip: Module paths left in float (a path also covers the modules below it).
    """

    bits: int = 8
    per_channel: bool = True
    learn_step: bool = False
    activations: bool = True
    skip: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be an integer from 2 to 8, got {self.bits!r}")
        if isinstance(self.skip, str):
            raise TypeError(f"skip must be a tuple of module paths, got the string {self.skip!r}")
        object.__setattr__(self, "skip", tuple(self.skip))

    @property
    def weight_qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def activation_levels(self) -> tuple[int, int]:
        return 0, 2 ** self.bits - 1


# ------------------------------------------------------------------ fake-quant modules

class WeightFakeQuant(nn.Module):
    """Symmetric weight fake quantization; the scale is max-derived or learned (LSQ)."""

    def __init__(self, weight: torch.Tensor, config: QATConfig):
        super().__init__()
        self.bits, self.qmax = config.bits, config.weight_qmax
        self.axis = 0 if config.per_channel else None
        channels = weight.shape[0] if config.per_channel else 1
        self.learn_step = config.learn_step
        # LSQ: N is the number of weights sharing one step size.
        self.lsq_grad_scale = 1.0 / math.sqrt(weight.numel() / channels * self.qmax)
        if self.learn_step:
            self.scale = nn.Parameter(symmetric_scales(weight, self.qmax, self.axis).clone())

    def current_scale(self, weight: torch.Tensor) -> torch.Tensor:
        """The scales in use ([C] or [1]), without the LSQ gradient scaling."""
        if self.learn_step:
            return self.scale.clamp_min(MIN_SCALE)
        return symmetric_scales(weight, self.qmax, self.axis)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = self.current_scale(weight)
        if self.learn_step:
            scale = grad_scale(scale, self.lsq_grad_scale)
        return fake_quantize(weight, along(scale, self.axis, weight.ndim), 0.0, -self.qmax, self.qmax)

    def extra_repr(self) -> str:
        return f"qmax={self.qmax}, axis={self.axis}, learn_step={self.learn_step}"


class ActivationFakeQuant(nn.Module):
    """Asymmetric activation fake quantization over [0, 2^bits - 1] with an integer zero point.

    In training mode the range follows an EMA of the batch min/max (the first batch sets it), or,
    with LSQ, the first batch initializes a learned step size. In eval mode the range is frozen.
    A quantizer that has not seen data yet passes its input through.
    """

    def __init__(self, config: QATConfig):
        super().__init__()
        self.qmin, self.qmax = config.activation_levels
        self.learn_step = config.learn_step
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        if self.learn_step:
            self.scale = nn.Parameter(torch.tensor(1.0))
            self.register_buffer("zero_point", torch.tensor(0.0))

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        lo, hi = x.min().float(), x.max().float()
        if self.initialized:
            lo = self.lo + EMA_MOMENTUM * (lo - self.lo)
            hi = self.hi + EMA_MOMENTUM * (hi - self.hi)
        self.lo.copy_(lo)
        self.hi.copy_(hi)
        if self.learn_step and not self.initialized:
            scale, zero_point = affine_qparams(lo, hi, self.qmin, self.qmax)
            self.scale.copy_(scale)
            self.zero_point.copy_(zero_point)
        self.initialized.fill_(True)

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) in use, without the LSQ gradient scaling."""
        if self.learn_step:
            return self.scale.clamp_min(MIN_SCALE), self.zero_point
        return affine_qparams(self.lo, self.hi, self.qmin, self.qmax)

    def grid_range(self) -> tuple[float, float]:
        """[lo, hi] of the grid in use: (qmin - zp) * scale, (qmax - zp) * scale."""
        scale, zero_point = (float(t.detach()) for t in self.qparams())
        return (self.qmin - zero_point) * scale, (self.qmax - zero_point) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not (self.learn_step and self.initialized):
            self.observe(x)
        if not self.initialized:
            return x
        scale, zero_point = self.qparams()
        if self.learn_step:
            # LSQ: N is the number of features of one example.
            scale = grad_scale(scale, 1.0 / math.sqrt(x[0].numel() * self.qmax))
        return fake_quantize(x, scale, zero_point, self.qmin, self.qmax)

    def extra_repr(self) -> str:
        return f"levels=[{self.qmin}, {self.qmax}], learn_step={self.learn_step}"


class QATConv2d(nn.Conv2d):
    """nn.Conv2d with fake-quantized weight and output (made by `prepare_qat`)."""

    weight_quant: WeightFakeQuant
    output_quant: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_quant(self._conv_forward(x, self.weight_quant(self.weight), self.bias))


class QATLinear(nn.Linear):
    """nn.Linear with fake-quantized weight and output (made by `prepare_qat`)."""

    weight_quant: WeightFakeQuant
    output_quant: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_quant(F.linear(x, self.weight_quant(self.weight), self.bias))


QAT_LAYERS = {nn.Conv2d: QATConv2d, nn.Linear: QATLinear}


# ------------------------------------------------------------------ layer plumbing (shared with lowbit)

def covered(path: str, prefixes: tuple[str, ...]) -> bool:
    """True if module `path` is one of `prefixes` or lies below one of them."""
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def layer_like(layer: nn.Module, cls: type[nn.Module], weight: torch.Tensor | None = None) -> nn.Module:
    """A `cls` layer with the hyperparameters of Conv2d/Linear `layer`, sharing its parameters
    (or using `weight` as a new weight parameter). Built on the meta device, so no random
    initialization runs and the global RNG is left alone."""
    if isinstance(layer, nn.Conv2d):
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                  padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                  bias=layer.bias is not None, padding_mode=layer.padding_mode, device="meta")
    elif isinstance(layer, nn.Linear):
        new = cls(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    else:
        raise TypeError(f"expected nn.Conv2d or nn.Linear, got {type(layer).__name__}")
    new.weight = layer.weight if weight is None else nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
    new.bias = layer.bias
    new.train(layer.training)
    return new


def base_layer_type(layer: nn.Module) -> type[nn.Module]:
    """nn.Conv2d or nn.Linear, whichever `layer` is (subclasses included)."""
    return nn.Conv2d if isinstance(layer, nn.Conv2d) else nn.Linear


def check_paths_exist(model: nn.Module, paths: tuple[str, ...], what: str) -> None:
    """Raise if a path names no module of `model` (a typo would otherwise be silently ignored)."""
    names = {name for name, _ in model.named_modules()}
    missing = [p for p in paths if p not in names]
    if missing:
        raise ValueError(f"{what}: no module named {', '.join(map(repr, missing))} in the model")


def replace_module(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put `new` at `path` in `root`; returns the root (which is `new` itself when path is "")."""
    if not path:
        return new
    root.set_submodule(path, new)
    return root


def _as_tuple(example_inputs) -> tuple:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


# ------------------------------------------------------------------ public API

def prepare_qat(model: nn.Module, config: QATConfig, example_inputs) -> nn.Module:
    """A deep copy of `model` ready for quantization-aware training.

    Each nn.Conv2d / nn.Linear (exactly those types, not subclasses) not under `config.skip`
    becomes a `QATConv2d` / `QATLinear` (same parameter paths) with a weight quantizer and, if
    `config.activations`, an output quantizer. One forward pass on `example_inputs` (model in eval mode, so batch norm statistics
    and dropout are untouched) initializes the activation ranges, so the copy is usable at once.

    Args:
        model: The float model; it is not modified.
        config: Bit width, granularity, LSQ and skipped layers.
        example_inputs: A tensor or a tuple of tensors the model accepts (a representative batch).

    Returns:
        The prepared copy, in the training mode `model` was in.
    """
    check_paths_exist(model, config.skip, "QATConfig.skip")
    prepared = copy.deepcopy(model)
    for path, layer in list(prepared.named_modules()):
        if type(layer) not in QAT_LAYERS or covered(path, config.skip):
            continue
        new = layer_like(layer, QAT_LAYERS[type(layer)])
        new.weight_quant = WeightFakeQuant(layer.weight, config)
        new.output_quant = ActivationFakeQuant(config) if config.activations else nn.Identity()
        new.to(layer.weight.device).train(layer.training)  # the quantizers follow the layer's mode
        prepared = replace_module(prepared, path, new)

    modes = {module: module.training for module in prepared.modules()}
    prepared.eval()
    for module in prepared.modules():
        if isinstance(module, ActivationFakeQuant):
            module.train()
    with torch.no_grad():
        prepared(*_as_tuple(example_inputs))
    for module, training in modes.items():
        module.training = training
    return prepared


def convert(model: nn.Module) -> nn.Module:
    """A plain float copy of a QAT model, with weights exactly on the learned integer grid.

    Every `QATConv2d` / `QATLinear` becomes an nn.Conv2d / nn.Linear whose weight is
    `scale * q` with q an integer in [-Qp, Qp] ([-127, 127] for 8 bits); the fake quantizers go.
    The learned numbers are attached as `converted.edgeport_qparams`::

        {
          "bits": 8,
          "weights": {
            "features.0.weight": {"scale": [s_0, s_1, ...], "axis": 0},   # per output channel
            "classifier.3.weight": {"scale": [s], "axis": None},          # per tensor
          },
          "activations": {
            "features.0": [lo, hi],   # output range of that module, on its grid
          },
        }

    Weight keys are parameter paths (the same as in the float model). Scales are float32 values
    (q = round(w / scale) recovers the integers). An activation range is the exact range of the
    grid the layer trained with, (qmin - zero point) * scale to (qmax - zero point) * scale, so
    it contains 0 and `qmath.activation_qparams(lo, hi)` returns that same scale (zero point
    shifted by -128 for int8). It describes the layer's own output (before a following ReLU).
    Layers whose output quantizer never saw data are left out of "activations".

    Args:
        model: A model returned by `prepare_qat` (possibly trained).

    Returns:
        The converted copy, in eval mode.
    """
    converted = copy.deepcopy(model)
    weights, activations, bits = {}, {}, None
    for path, layer in list(converted.named_modules()):
        if not isinstance(layer, (QATConv2d, QATLinear)):
            continue
        quant = layer.weight_quant
        bits = quant.bits
        with torch.no_grad():
            scale = quant.current_scale(layer.weight).detach().clone()
            q = torch.clamp(torch.round(layer.weight / along(scale, quant.axis, layer.weight.ndim)),
                            -quant.qmax, quant.qmax)
            grid = q * along(scale, quant.axis, layer.weight.ndim)
        plain = layer_like(layer, base_layer_type(layer), weight=grid)
        converted = replace_module(converted, path, plain)
        weights[f"{path}.weight" if path else "weight"] = {"scale": [float(s) for s in scale], "axis": quant.axis}
        if isinstance(layer.output_quant, ActivationFakeQuant) and bool(layer.output_quant.initialized):
            activations[path] = list(layer.output_quant.grid_range())
    if not weights:
        raise ValueError("convert: the model has no QAT layers (was it made by prepare_qat?)")
    converted.edgeport_qparams = {"bits": bits, "weights": weights, "activations": activations}
    return converted.eval()
