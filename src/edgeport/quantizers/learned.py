"""Quantization numbers learned in training, placed on the tensors of the float ONNX graph.

`edgeport.training.qat.convert` leaves them on the module as `edgeport_qparams` (the source keeps
them as `FloatModel.learned_qparams`): per-channel weight scales keyed by parameter path, and the
output range of each quantized layer keyed by module path. Here they become plan numbers:

- a weight: the ONNX initializer the model's parameter map (`FloatModel.params`) pairs with the
  parameter takes the learned scales, as long as they hold it (one per output channel, or one for
  the tensor; no weight beyond 127 steps);
- an activation: the output of the module's last ONNX node takes the learned range. When a ReLU
  alone consumes it, the ReLU's output is the tensor runtimes quantize (TFLite fuses the ReLU into
  the layer; onnxruntime removes it and quantizes the layer's output with the ReLU output's
  numbers), so it takes the learned step too, with zero point -128: the non-negative half of the
  learned grid, so whichever runtime folds the ReLU into the quantization clamps at 0.

Numbers that cannot be placed are listed, so the report says what was not used. Calibration
data is still needed: the model's input (and any tensor QAT did not quantize) is calibrated, and
the other graphs of the model (PT2E, Core ML) find each planned tensor by the raw range it showed
on the calibration data.
"""

from __future__ import annotations

import numpy as np

from edgeport.quantizers import qmath
from edgeport.quantizers.plan import ActivationParams

FIT_TOLERANCE = 1e-3  # in quantization steps: float rounding of a weight stored as scale * q


def learned_weights(learned: dict | None) -> dict[str, dict]:
    """PyTorch parameter path -> {"path", "scale", "axis"} of the learned weight scales (the
    parameter map gives the ONNX initializer of each path)."""
    if not learned:
        return {}
    return {path: {"path": path, **entry} for path, entry in learned.get("weights", {}).items()}


def learned_weight_scales(entry: dict, weight: np.ndarray, axis: int | None) -> np.ndarray | None:
    """The learned scales of `weight` as plan scales along `axis` (one per slice, or one), or None
    when they cannot hold it: another channel count, per-channel scales for a per-tensor plan, a
    scale <= 0, or a weight more than 127 steps from 0 (int8 would clip it)."""
    scale = np.asarray(entry["scale"], dtype=np.float32).ravel()
    channels = 1 if axis is None else weight.shape[axis]
    if scale.size == 1:
        scale = np.full(channels, scale[0], dtype=np.float32)  # learned per tensor: the same scale everywhere
    if scale.size != channels or not np.all(scale > 0):
        return None
    shape = [-1 if d == axis else 1 for d in range(weight.ndim)]
    steps = np.abs(np.asarray(weight, dtype=np.float32)) / scale.reshape(shape)
    if steps.max(initial=0.0) > qmath.INT8_MAX + FIT_TOLERANCE:
        return None
    return scale


def layer_outputs(onnx_model, layers: dict[str, str]) -> dict[str, str]:
    """Module path -> the tensor it outputs: the first output of its last node in graph order."""
    outputs = {}
    for node in onnx_model.graph.node:
        path = layers.get(node.name)
        if path and node.output:
            outputs[path] = node.output[0]
    return outputs


def fused_relu_output(onnx_model, tensor: str) -> str | None:
    """The output of the ReLU that alone consumes `tensor` (not a graph output), else None."""
    if tensor in {o.name for o in onnx_model.graph.output}:
        return None
    consumers = [n for n in onnx_model.graph.node if tensor in n.input]
    if len(consumers) == 1 and consumers[0].op_type == "Relu":
        return consumers[0].output[0]
    return None


def learned_activations(onnx_model, layers: dict[str, str], ranges: dict[str, list[float]],
                        observed: dict[str, tuple[float, float]]) -> tuple[dict[str, ActivationParams], list[str]]:
    """int8 parameters of the tensors whose ranges were learned (see the module docstring), and
    the module paths whose range found no tensor of the graph.

    Args:
        onnx_model: The float ONNX graph.
        layers: ONNX node name -> module path (`FloatModel.layers`).
        ranges: Module path -> learned [lo, hi] (the output range of that module).
        observed: Tensor name -> raw (min, max) on the calibration data; it stays the tensor's
            `observed` range, by which other graphs of the model find it.
    """
    outputs = layer_outputs(onnx_model, layers)
    params: dict[str, ActivationParams] = {}
    missing = []
    for path, (lo, hi) in ranges.items():
        tensor = outputs.get(path)
        if tensor is None or tensor not in observed:
            missing.append(path)
            continue
        scale, zero_point = qmath.activation_qparams(lo, hi)
        params[tensor] = ActivationParams(float(scale), int(zero_point), (float(lo), float(hi)), observed[tensor])
        relu = fused_relu_output(onnx_model, tensor)
        if relu is not None and relu in observed:
            top = float(scale) * (qmath.INT8_MAX - qmath.INT8_MIN)
            params[relu] = ActivationParams(float(scale), qmath.INT8_MIN, (0.0, top), observed[relu])
    return params, missing


def learned_note(bits, weight_layers: list[str], activation_layers: list[str], unused: list[str]) -> str:
    """The report's line on the numbers learned by QAT."""
    parts = []
    if weight_layers:
        parts.append(f"the weight scales of {len(weight_layers)} layers ({', '.join(weight_layers)})")
    if activation_layers:
        parts.append(f"the output ranges of {len(activation_layers)} layers ({', '.join(activation_layers)}; "
                     "after a ReLU its output, with the same step and zero point -128)")
    note = (f"QAT: the plan uses the numbers learned in training ({bits}-bit, edgeport_qparams): "
            + (" and ".join(parts) if parts else "none of them"))
    note += f"; calibration gives the {'other ' if activation_layers else ''}activations"
    if unused:
        note += f"; not used: {', '.join(unused)}"
    return note


def lowbit_note(kinds: dict[str, str]) -> str:
    """The report's line on binary / ternary weights: layer -> "binary" or "ternary"."""
    values = "±1" + (" (ternary: -1, 0, +1)" if "ternary" in kinds.values() else "")
    return (f"{len(kinds)} layers hold binary/ternary weights "
            f"({', '.join(f'{layer} {kind}' for layer, kind in kinds.items())}): "
            f"int8 tensors of {values} with the scale α (ONNX, TFLite and TF.js store 8 bits per weight; "
            "the C library packs them into 1 or 2 bits, Core ML into 1- or 2-bit palettes)")
