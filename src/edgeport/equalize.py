"""Rewrites of the float model that make it quantize better, applied once before the plan.

Each is a recipe option, rewrites the float ONNX graph's weights (the graph every target is made
from) and reports what it changed:

- `equalize` (cross-layer equalization, Nagel et al. 2019, "Data-Free Quantization"): for two
  layers in a row, with at most a positively homogeneous activation (ReLU, PReLU, LeakyReLU)
  between them, output channel i of the first is divided by s_i and input channel i of the second
  multiplied by it, s_i = sqrt(r1_i / r2_i) from the channels' weight ranges. The float model
  computes the same; per-tensor and depthwise weights, whose channels' ranges differ by orders of
  magnitude, lose far less to int8. Chains are swept until the scales settle.
- `smoothquant` (Xiao et al. 2023): a transformer linear's input has a few channels with outlier
  activations that set the whole tensor's int8 scale. Where the input is made by a per-channel
  affine step (LayerNormalization, or the Mul / Add tail of a decomposed one), channel j is divided
  by s_j = max|X_j|^α / max|W_j|^(1-α) in that step and the weight rows multiplied by it: the
  difficulty moves from the activations to the weights. Needs calibration data.
- `bias_correction` (Nagel et al. 2019, section 4.2, with the input means measured on the
  calibration data instead of taken from BatchNorm): int8 / int4 rounding shifts each layer's
  mean output by (W_q - W) E[x]; the float bias is corrected by that amount, so the quantized
  layer's mean output is the float one's. Runs after a first plan (it needs the weights' scales).

A PyTorch source's module gets the same new values where each rewritten weight is one of its
parameters; where one is not (BatchNorm folded into the rewritten conv, a bias the module lacks),
targets that convert a module (android, ios, the C library) convert one made from the rewritten
ONNX graph, as for an .onnx source. The reference stays the original model, so parity shows that
the rewrite kept the float function.

Why written here: aimet-onnx 2.42 has CLE and bias correction but is an 85 MB native wheel pulling
bokeh, hvplot, pandas and osqp, works on its own graph representation, and replaces ReLU6 by ReLU
(a different float model); amd-quark 0.13 pins onnx <= 1.22 and pulls HF evaluate; Intel
neural-compressor's SmoothQuant runs inside its own onnxruntime quantization flow. The rewrites
themselves are a few array operations on the graph edgeport already holds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeport.data import Dataset
from edgeport.errors import InputError
from edgeport.model import FloatModel
from edgeport.params import ParamMap
from edgeport.recipe import Recipe

HOMOGENEOUS = ("Relu", "PRelu", "LeakyRelu")  # f(x / s) = f(x) / s for s > 0, per channel
LINEAR_OPS = ("Conv", "Gemm", "MatMul")
SHAPE_ONLY = ("Shape", "Size")  # read a tensor's shape, not its values: scaling it changes nothing
CLE_ROUNDS = 20  # sweeps over the pairs; chains of three settle in a handful
CLE_SETTLED = 1e-3  # stop when no scale moves by more than this (relative)
SCALE_LIMITS = (1e-4, 1e4)  # a channel's scale is kept in these bounds (dead channels, zero ranges)


def wanted(recipe: Recipe) -> bool:
    return bool(recipe.equalize or recipe.smoothquant is not None)


def rewrite(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> tuple[FloatModel, dict]:
    """Apply the recipe's `equalize` and `smoothquant`: the rewritten model and what changed."""
    if not wanted(recipe):
        return model, {}
    _check_rewritable(model, "equalize / smoothquant")
    onnx_model = model.onnx_model()
    applied = {}
    if recipe.equalize:
        applied["equalize"] = equalize_pairs(onnx_model)
    if recipe.smoothquant is not None:
        if calib is None:
            raise InputError("--smoothquant measures the activations' channels on calibration data: give --calib")
        applied["smoothquant"] = smooth(onnx_model, calib, recipe.smoothquant)
    return _rewritten(model, onnx_model), applied


def correct_biases(model: FloatModel, plan, calib: Dataset) -> tuple[FloatModel, dict]:
    """The model whose quantized layers' float biases absorb the mean shift their weights'
    rounding (by `plan`) causes on the calibration data; and what was corrected."""
    from onnx import numpy_helper

    from edgeport.quantizers.calibration import channel_statistics

    _check_rewritable(model, "bias_correction")
    onnx_model = model.onnx_model()
    graph = onnx_model.graph
    inits = {i.name: i for i in graph.initializer}
    readers = _readers(graph)
    layers = []  # (node, weight name, input channel axis)
    for node in graph.node:
        if node.op_type in LINEAR_OPS and len(node.input) > 1 and node.input[1] in plan.weights \
                and node.input[1] in inits and _transposed_input(node) is False:
            layers.append((node, node.input[1], 1 if node.op_type == "Conv" else -1))
    skipped = {"no bias to correct": 0}
    stats = channel_statistics(onnx_model, calib, {node.input[0]: axis for node, _, axis in layers})
    corrected, largest = [], (0.0, "")
    for node, name, _ in layers:
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        shift = _mean_shift(node, w, plan.weights[name].rounded(w) - w, stats[node.input[0]][0])
        bias = None if shift is None else _bias_of(node, graph, inits, readers, len(shift))
        if bias is None:
            skipped["no bias to correct"] += 1
            continue
        holder, value = bias
        _set(inits, graph, holder, (value - shift).astype(np.float32))
        corrected.append(model.layers.get(node.name, node.name))
        if float(np.abs(shift).max(initial=0.0)) >= largest[0]:
            largest = (float(np.abs(shift).max(initial=0.0)), corrected[-1])
    info = {"layers": len(corrected), "largest_shift": float(f"{largest[0]:.4g}"), "at": largest[1],
            "skipped": {k: v for k, v in skipped.items() if v}}
    return _rewritten(model, onnx_model), info


def note(applied: dict) -> list[str]:
    """One report line per rewrite applied."""
    lines = []
    if "equalize" in applied:
        e = applied["equalize"]
        lines.append(f"cross-layer equalization: {e['pairs']} layer pair(s) equalized in {e['rounds']} sweep(s)"
                     + _skips(e["skipped"]))
    if "smoothquant" in applied:
        s = applied["smoothquant"]
        lines.append(f"smoothquant (alpha {s['alpha']}): {s['inputs']} linear input(s) smoothed, feeding "
                     f"{s['layers']} layer(s); largest channel scale {s['largest_scale']:.3g}" + _skips(s["skipped"]))
    if "bias_correction" in applied:
        b = applied["bias_correction"]
        lines.append(f"bias correction: {b['layers']} layer(s) corrected for the mean output shift of their rounded "
                     f"weights (largest {b['largest_shift']:.3g} at {b['at']})" + _skips(b["skipped"]))
    return lines


def _skips(skipped: dict) -> str:
    return "; not applied: " + ", ".join(f"{n} {why}" for why, n in skipped.items()) if skipped else ""


def _check_rewritable(model: FloatModel, what: str) -> None:
    if model.learned_qparams:
        raise InputError(f"{model.source}: {what} rewrites weights whose quantization numbers were learned in "
                         "quantization-aware training; export the QAT model without it")


def _rewritten(model: FloatModel, onnx_model) -> FloatModel:
    """`model` holding `onnx_model`'s weights. A PyTorch module gets the same values where each
    changed weight is a parameter (or a linear layer's weight transposed); otherwise (BatchNorm
    folded into a rewritten conv, a bias the module lacks) module-based converters convert the
    rewritten graph instead, as for an .onnx source. Nothing changed: `model` as it is."""
    from onnx import numpy_helper

    before = {i.name: i for i in model.onnx_model().graph.initializer}
    changed = {}
    for init in onnx_model.graph.initializer:
        old = before.get(init.name)
        if old is None or old.SerializeToString() != init.SerializeToString():
            changed[init.name] = (None if old is None else numpy_helper.to_array(old), numpy_helper.to_array(init))
    if not changed:
        return model
    module = _mirrored(model, changed)
    params = model.params.with_values(onnx_model, module) if module is not None else ParamMap.build(onnx_model)
    return replace(model, onnx_bytes=onnx_model.SerializeToString(), torch_module=module,
                   example_inputs=model.example_inputs if module is not None else (), params=params)


def _mirrored(model: FloatModel, changed: dict[str, tuple]):
    """A copy of the model's PyTorch module holding the changed weights, or None when one of them
    is no parameter of it."""
    if model.torch_module is None:
        return None
    import copy

    import torch

    module = copy.deepcopy(model.torch_module)
    parameters = dict(module.named_parameters())
    with torch.no_grad():
        for name, (old, new) in changed.items():
            entry = model.params.by_onnx(name)
            param = parameters.get(entry.path) if entry is not None and entry.path else None
            if param is not None and not entry.rewritten and tuple(param.shape) == new.shape:
                param.copy_(torch.from_numpy(np.array(new)))
                continue
            if old is None or old.ndim != 2:
                return None
            same = [p for p in parameters.values() if tuple(p.shape) == old.T.shape
                    and np.array_equal(p.detach().cpu().numpy(), old.T)]
            if len(same) != 1:
                return None
            same[0].copy_(torch.from_numpy(np.ascontiguousarray(new.T)))
    return module


# ---------------------------------------------------------------- graph access

def _readers(graph) -> dict[str, list]:
    """Value name -> the nodes reading it (sub-graphs included); a graph output counts as a reader."""
    from edgeport.graph_cleanup import all_nodes

    readers: dict[str, list] = {}
    for node in all_nodes(graph):
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for output in graph.output:
        readers.setdefault(output.name, []).append(None)
    return readers


def _array(inits: dict, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    return numpy_helper.to_array(inits[name]).astype(np.float32) if name in inits else None


def _set(inits: dict, graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    if name in inits:
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    else:
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        inits[name] = graph.initializer[-1]


def _attr(node, name: str, default=0):
    return next((a.i for a in node.attribute if a.name == name), default)


def _transposed_input(node) -> bool:
    """Whether a Gemm transposes its data input (the weight is then not [in, out] / [out, in])."""
    return node.op_type == "Gemm" and bool(_attr(node, "transA"))


def _axes(node, w: np.ndarray) -> tuple[int, int] | None:
    """(output channel axis, input channel axis) of a linear layer's weight; None for a layout
    these rewrites do not handle (batched MatMul weights, grouped non-depthwise convolutions are
    handled by `_in_slices`)."""
    if node.op_type == "Conv":
        return 0, 1
    if node.op_type == "Gemm":
        return (0, 1) if _attr(node, "transB") else (1, 0)
    if node.op_type == "MatMul" and w.ndim == 2:
        return 1, 0
    return None


def _out_ranges(w: np.ndarray, out_axis: int) -> np.ndarray:
    return np.abs(np.moveaxis(w, out_axis, 0)).reshape(w.shape[out_axis], -1).max(axis=1)


def _in_view(node, w: np.ndarray, channels: int) -> tuple[np.ndarray, object] | None:
    """The weight as [input channel, rest] (a view to read ranges from) and a function that scales
    it per input channel; handles grouped / depthwise convolutions (channel i feeds only its
    group's outputs). None when `channels` is not the layer's input width."""
    if node.op_type == "Conv":
        groups = _attr(node, "group", 1)
        per_group, out_per_group = w.shape[1], w.shape[0] // groups
        if per_group * groups != channels:
            return None
        blocks = w.reshape(groups, out_per_group, per_group, -1)  # [g, out in g, in in g, taps]
        view = np.moveaxis(blocks, 2, 1).reshape(channels, -1)

        def scale(s: np.ndarray) -> np.ndarray:
            factors = s.reshape(groups, 1, per_group, 1)
            return (blocks * factors).reshape(w.shape)
        return view, scale
    axes = _axes(node, w)
    if axes is None or w.shape[axes[1]] != channels:
        return None
    in_axis = axes[1]
    view = np.moveaxis(w, in_axis, 0).reshape(channels, -1)
    return view, lambda s: w * s.reshape([-1 if d == in_axis else 1 for d in range(w.ndim)])


# ---------------------------------------------------------------- cross-layer equalization

SCALE_VARIANT = ("Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Gelu")  # f(x / s) != f(x) / s


def _pairs(graph, inits, readers) -> tuple[list[tuple], dict[str, int]]:
    """(first, activation or None, second) for each pair of linear layers with their own constant
    weights in a row (a MatMul's bias Add and a scale-invariant activation may sit between), each
    value between them read by the next step alone; and how many pairs an activation that does
    not commute with scaling (ReLU6, hard-swish, ...) kept apart."""
    skipped: dict[str, int] = {}
    found = []
    for first in graph.node:
        if not _own_weight(first, inits, readers):
            continue
        step = first.output[0]
        nxt = _only_reader(readers, step)
        if first.op_type == "MatMul" and nxt is not None and nxt.op_type == "Add" \
                and _bias_of(first, graph, inits, readers, _out_width(first, inits), create=False) is not None:
            step = nxt.output[0]
            nxt = _only_reader(readers, step)
        between = None
        if nxt is not None and nxt.op_type in HOMOGENEOUS:
            between, step = nxt, nxt.output[0]
            nxt = _only_reader(readers, step)
        elif nxt is not None and nxt.op_type in SCALE_VARIANT:
            after = _only_reader(readers, nxt.output[0])
            if after is not None and _own_weight(after, inits, readers):
                why = f"(a {nxt.op_type} between the layers does not commute with scaling)"
                skipped[why] = skipped.get(why, 0) + 1
            continue
        if nxt is None or not _own_weight(nxt, inits, readers) or nxt.input[0] != step:
            continue
        if between is not None and between.op_type == "PRelu" and not _per_channel_slope(between, inits, first):
            continue
        found.append((first, between, nxt))
    return found, skipped


def _own_weight(node, inits, readers) -> bool:
    """A linear layer whose weight is a constant only it reads, in a layout handled here."""
    if node.op_type not in LINEAR_OPS or len(node.input) < 2 or node.input[1] not in inits \
            or len(readers.get(node.input[1], [])) != 1 or _transposed_input(node):
        return False
    return _axes(node, _array(inits, node.input[1])) is not None


def _only_reader(readers, name: str):
    found = readers.get(name, [])
    return found[0] if len(found) == 1 else None


def _out_width(node, inits) -> int:
    w = _array(inits, node.input[1])
    return w.shape[_axes(node, w)[0]]


def _per_channel_slope(node, inits, first) -> bool:
    """A PRelu's slope is constant (one value, or one per channel): scaling commutes with it."""
    slope = _array(inits, node.input[1]) if len(node.input) > 1 else None
    return slope is not None and slope.size in (1, _out_width(first, inits))


def equalize_pairs(onnx_model) -> dict:
    """Cross-layer equalization of every eligible pair (in place): how many pairs and sweeps."""
    graph = onnx_model.graph
    inits = {i.name: i for i in graph.initializer}
    readers = _readers(graph)
    pairs, skipped = _pairs(graph, inits, readers)
    rounds = 0
    for rounds in range(1, CLE_ROUNDS + 1):
        moved = 0.0
        for first, _, second in pairs:
            moved = max(moved, _equalize(first, second, inits, graph, readers))
        if moved < CLE_SETTLED:
            break
    return {"pairs": len(pairs), "rounds": rounds if pairs else 0, "skipped": skipped}


def _equalize(first, second, inits, graph, readers) -> float:
    """Equalize one pair in place; the largest relative change of a scale (0 when settled)."""
    w1 = _array(inits, first.input[1])
    out_axis = _axes(first, w1)[0]
    r1 = _out_ranges(w1, out_axis)
    w2 = _array(inits, second.input[1])
    viewed = _in_view(second, w2, len(r1))
    if viewed is None:
        return 0.0
    view, scale_in = viewed
    r2 = np.abs(view).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(r1 / r2)
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0).clip(*SCALE_LIMITS).astype(np.float32)
    _set(inits, graph, first.input[1], w1 / s.reshape([-1 if d == out_axis else 1 for d in range(w1.ndim)]))
    bias = _bias_of(first, graph, inits, readers, len(s), create=False)
    if bias is not None:
        _set(inits, graph, bias[0], bias[1] / s)
    _set(inits, graph, second.input[1], scale_in(s))
    return float(np.abs(s - 1.0).max(initial=0.0))


def _bias_of(node, graph, inits, readers, channels: int, create: bool = True) -> tuple[str, np.ndarray] | None:
    """(initializer name, values) of the bias a linear layer adds per output channel: Conv / Gemm's
    third input, or a MatMul's Add of a constant read by nothing else. A Conv without one gets a zero
    bias input when `create`; None when the layer has no bias this can change."""
    if node.op_type in ("Conv", "Gemm"):
        if len(node.input) > 2 and node.input[2]:
            name = node.input[2]
            value = _array(inits, name)
            if value is None or value.size not in (1, channels) or len(readers.get(name, [])) != 1:
                return None
            return name, np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float32).copy()
        if node.op_type == "Gemm" or not create:
            return None
        name = f"{node.name or node.output[0]}.corrected_bias"
        while name in inits:
            name += "_"
        if len(node.input) == 2:
            node.input.append(name)
        else:
            node.input[2] = name
        return name, np.zeros(channels, dtype=np.float32)
    after = readers.get(node.output[0], [])
    if len(after) != 1 or after[0] is None or after[0].op_type != "Add":
        return None
    other = [n for n in after[0].input if n != node.output[0]]
    if len(other) != 1 or other[0] not in inits or len(readers.get(other[0], [])) != 1:
        return None
    value = _array(inits, other[0])
    if value.shape != (channels,):
        return None
    return other[0], value


# ---------------------------------------------------------------- bias correction

def _mean_shift(node, w: np.ndarray, error: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """The mean output shift (W_q - W) E[x] per output channel; None for a layout not handled."""
    if node.op_type == "Conv":
        groups = _attr(node, "group", 1)
        per_group = w.shape[1]
        if per_group * groups != len(mean):
            return None
        taps = error.reshape(w.shape[0], per_group, -1).sum(axis=2)  # [out, in in group]
        group_of = np.arange(w.shape[0]) // (w.shape[0] // groups)
        return (taps * mean.reshape(groups, per_group)[group_of]).sum(axis=1)
    axes = _axes(node, w)
    if axes is None or w.shape[axes[1]] != len(mean):
        return None
    return mean @ error if axes[1] == 0 else error @ mean


# ---------------------------------------------------------------- SmoothQuant

def smooth(onnx_model, calib: Dataset, alpha: float) -> dict:
    """SmoothQuant every linear input made by a per-channel affine step (in place)."""
    from edgeport.quantizers.calibration import channel_statistics

    graph = onnx_model.graph
    inits = {i.name: i for i in graph.initializer}
    readers = _readers(graph)
    producers = {o: n for n in graph.node for o in n.output}
    candidates, skipped = [], {}
    for tensor, consumers in readers.items():
        linears = [n for n in consumers if n is not None and n.op_type in ("MatMul", "Gemm") and n.input[0] == tensor]
        if not linears:
            continue
        if len(linears) != len([n for n in consumers if n is None or n.op_type not in SHAPE_ONLY]):
            continue  # also read by something that is not a linear layer: cannot rescale the tensor
        affine = _affine_step(producers.get(tensor), inits, readers, producers)
        if affine is None:
            why = "(input not made by a LayerNorm or per-channel affine step)"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        weights = [_array(inits, n.input[1]) if len(n.input) > 1 and len(readers.get(n.input[1], [])) == 1 else None
                   for n in linears]
        if any(w is None or _axes(n, w) is None or _transposed_input(n) for n, w in zip(linears, weights)):
            continue
        candidates.append((tensor, affine, linears))
    stats = channel_statistics(onnx_model, calib, {t: -1 for t, _, _ in candidates}) if candidates else {}
    largest, layers = 1.0, 0
    for tensor, (scale_name, shift_name), linears in candidates:
        peak = stats[tensor][1]
        views = [_in_view(n, _array(inits, n.input[1]), len(peak)) for n in linears]
        if any(v is None for v in views):
            continue
        w_peak = np.max([np.abs(v[0]).max(axis=1) for v in views], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = peak ** alpha / w_peak ** (1.0 - alpha)
        s = np.where(np.isfinite(s) & (s > 0), s, 1.0).clip(*SCALE_LIMITS).astype(np.float32)
        for name in (scale_name, shift_name):
            if name is not None:
                _set(inits, graph, name, _array(inits, name) / s.reshape(_array(inits, name).shape))
        for node, (_, scale_in) in zip(linears, views):
            _set(inits, graph, node.input[1], scale_in(s))
        layers += len(linears)
        largest = max(largest, float(s.max()), float(1.0 / s.min()))
    return {"alpha": alpha, "inputs": len(candidates), "layers": layers, "largest_scale": largest,
            "skipped": skipped}


def _affine_step(node, inits, readers, producers) -> tuple[str, str | None] | None:
    """(scale initializer, shift initializer or None) of the per-channel affine step that made a
    tensor: a LayerNormalization over the last axis, or `Add(Mul(x, gamma), beta)` / `Mul(x, gamma)`
    with gamma / beta one constant per channel (a decomposed LayerNorm's tail). Each constant must be
    read by that step alone."""
    def own(name: str) -> bool:
        return name in inits and len(readers.get(name, [])) == 1 and _array(inits, name).ndim == 1

    if node is None:
        return None
    if node.op_type == "LayerNormalization":
        if _attr(node, "axis", -1) != -1 or not own(node.input[1]):
            return None
        shift = node.input[2] if len(node.input) > 2 and node.input[2] else None
        return None if shift is not None and not own(shift) else (node.input[1], shift)
    shift = None
    if node.op_type == "Add":
        consts = [n for n in node.input if n in inits]
        if len(consts) != 1 or not own(consts[0]):
            return None
        shift = consts[0]
        data = next(n for n in node.input if n != shift)
        if len(readers.get(data, [])) != 1:
            return None
        node = producers.get(data)
        if node is None:
            return None
    if node.op_type != "Mul":
        return None
    consts = [n for n in node.input if n in inits]
    if len(consts) != 1 or not own(consts[0]):
        return None
    if shift is not None and _array(inits, shift).shape != _array(inits, consts[0]).shape:
        return None
    return consts[0], shift
