"""Quantizers: one planner per scheme config type, each computing a `QuantPlan` from the float model.

The plan is made once per export and shared by every target's exporter. A planner is registered
for its scheme's config class (`@PLANNERS.register(Int8Static)`); `make_plan` picks it by the
type of `recipe.scheme`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from edgeport.data import Dataset
from edgeport.errors import InputError
from edgeport.model import FloatModel
from edgeport.quantizers import qmath
from edgeport.quantizers.learned import (
    learned_activations, learned_note, learned_weight_scales, learned_weights, lowbit_note)
from edgeport.quantizers.overrides import float_nodes, resolve_precisions
from edgeport.quantizers.plan import ActivationParams, QuantPlan, WeightParams
from edgeport.recipe import Recipe
from edgeport.registry import Registry
from edgeport.schemes import DynamicInt8, Float32, Fp16, Int8Static, Int16x8, WeightOnlyInt4, WeightOnlyInt8

Planner = Callable[[FloatModel, Recipe, "Dataset | None"], QuantPlan]
PLANNERS: Registry[Planner] = Registry("planner")

# Ops whose second input is a weight that int8 schemes quantize, and its output-channel axis.
STATIC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DYNAMIC_OPS = ("Gemm", "MatMul")
# Ops that move values without changing them: their int8 output must reuse the input's scale and
# zero point (TFLite requires it and onnxruntime's QDQ quantizer does the same).
PASS_THROUGH_OPS = ("MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                    "Identity", "Slice", "Gather", "Split", "DepthToSpace", "SpaceToDepth", "Resize")  # ORT has int8 dynamic kernels for these (like torch's dynamic quantization)


def make_plan(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    """Compute the recipe's quantization parameters for `model` (the one public entry point)."""
    if recipe.needs_calibration and calib is None:
        raise InputError(f"recipe '{recipe.scheme.name}' needs calibration data (--calib FILE)")
    return PLANNERS.get(type(recipe.scheme))(model, recipe, calib)


def weight_axis(node, weight_ndim: int) -> int:
    """Output-channel axis of the weight input of `node`."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return weight_ndim - 1  # MatMul: (..., K, N) -> per N


def weight_inputs(onnx_model, op_types: tuple[str, ...], skip: set[str]):
    """Yield (node, initializer name, float32 array) for the weight input of each node of `op_types`
    not in `skip`; each initializer once, only float32 tensors of rank >= 2."""
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx_model.graph.initializer}
    seen = set()
    for node in onnx_model.graph.node:
        if node.op_type not in op_types or node.name in skip or len(node.input) < 2:
            continue
        name = node.input[1]
        if name not in inits or name in seen:
            continue
        seen.add(name)
        w = numpy_helper.to_array(inits[name])
        if w.dtype == np.float32 and w.ndim >= 2:
            yield node, name, w


EMBEDDING_MIN_ELEMENTS = 1024  # smaller Gather tables are lookup constants, not embeddings


def embedding_tables(onnx_model, skip: set[str]):
    """Yield (node, initializer name, float32 array) for each embedding table: the rank-2 float32
    initializer a Gather (axis 0, not in `skip`) looks rows up in by ids computed at run time."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in onnx_model.graph.initializer}
    seen = set()
    for node in onnx_model.graph.node:
        if node.op_type != "Gather" or node.name in skip or len(node.input) < 2:
            continue
        name, ids = node.input[:2]
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        if name not in inits or ids in inits or axis != 0 or name in seen:
            continue
        seen.add(name)
        table = numpy_helper.to_array(inits[name])
        if table.dtype == np.float32 and table.ndim == 2 and table.size >= EMBEDDING_MIN_ELEMENTS:
            yield node, name, table


INT4_ROW_MULTIPLE = 16  # onnxruntime's GatherBlockQuantized reads int4 rows in blocks of 16 or more


def plan_embeddings(model: FloatModel, onnx_model, skip: set[str], taken, bits: int = 8) -> dict[str, WeightParams]:
    """Symmetric scales of each embedding table, one per row (max|row| / 127, or / 7 with
    `bits` 4): a lookup returns rows, so a row is the table's channel. int4 rows need a width that
    is a multiple of 16 (the blocks onnxruntime's int4 lookup reads); narrower tables stay int8.
    Tables also used as a layer weight (`taken`, tied embeddings) keep the layer's numbers."""
    tables = {}
    for node, name, table in embedding_tables(onnx_model, skip):
        if name in taken:
            continue
        layer = model.layers.get(node.name, node.name)
        if bits == 4 and table.shape[1] % INT4_ROW_MULTIPLE == 0:
            scales = qmath.int4_scales(table, 0, None)
            tables[name] = WeightParams(scale=scales.tolist(), zero_point=[0] * len(scales), axis=0, layer=layer,
                                        bits=4)
        else:
            scales = qmath.weight_scales(table, 0)
            tables[name] = WeightParams(scale=scales.tolist(), zero_point=[0] * len(scales), axis=0, layer=layer)
    return tables


def _with_int8_rows(onnx_model, embeddings: dict[str, WeightParams]):
    """A copy of `onnx_model` whose embedding tables hold their integer rows scaled back to float."""
    from onnx import numpy_helper

    if not embeddings:
        return onnx_model
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(onnx_model)
    for init in copy.graph.initializer:
        if init.name in embeddings:
            rows = embeddings[init.name].rounded(numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(rows.astype(np.float32), init.name))
    return copy


def plan_weights(model: FloatModel, recipe: Recipe, op_types: tuple[str, ...], onnx_model,
                 skip: set[str], origin: dict[str, str] | None = None) -> dict[str, WeightParams]:
    """Symmetric int8 scales of each weight of `op_types` (not in `skip`): max|w| / 127.

    With `origin` (the static schemes, whose exporters store the plan's weight scales), a weight
    keeps an exact grid instead: the scales learned by QAT (`model.learned_qparams`), or, for a
    binary / ternary weight, its α (integers ±1 / -1, 0, +1). `origin` records which weights did.
    (TFLite's int16x8 and float-I/O int8 paths go through ai-edge-quantizer, which applies the
    rule to every weight; their `params` check shows where that differs from the plan.)
    """
    learned = learned_weights(model.learned_qparams) if origin is not None else {}
    weights = {}
    for node, name, w in weight_inputs(onnx_model, op_types, skip):
        axis = weight_axis(node, w.ndim) if recipe.per_channel else None
        scales, kind = qmath.weight_scales(w, axis), None
        entry = learned.get(model.params.torch_path(name))
        found = learned_weight_scales(entry, w, axis) if entry is not None else None
        if found is not None:
            scales, kind = found, "qat"
        elif origin is not None:
            scales, kind = qmath.lowbit_scales(w, axis) or (scales, None)
        if kind:
            origin[name] = kind
        weights[name] = WeightParams(scale=scales.tolist(), zero_point=[0] * len(scales), axis=axis,
                                     layer=model.layers.get(node.name, node.name))
    return weights


def planned_weights_by_rule(onnx_model, plan: QuantPlan) -> dict[tuple[float, ...], WeightParams]:
    """The plan's weights keyed by the scales the rule (max|w| / 127) gives each of them: what a
    converter's own observer computes from the same weight, so it finds the plan's numbers even
    where they are not the rule's (QAT, binary). The fallback for a weight the converter holds
    under no parameter path the model's `ParamMap` knows, or with other values (BatchNorm folded
    by the converter); a weight it names is found through the map."""
    return {tuple(qmath.weight_scales(w, plan.weights[name].axis).tolist()): plan.weights[name]
            for _, name, w in weight_inputs(onnx_model, STATIC_OPS, set()) if name in plan.weights}


@PLANNERS.register(Float32)
def plan_none(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return QuantPlan(scheme=recipe.scheme.name)


@PLANNERS.register(Fp16)
def plan_fp16(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    onnx_model = model.onnx_model()
    return QuantPlan(scheme=recipe.scheme.name, float_nodes=float_nodes(onnx_model, model.layers, recipe))


@PLANNERS.register(DynamicInt8)
def plan_dynamic_int8(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return _plan_weights_only(model, recipe, DYNAMIC_OPS)


@PLANNERS.register(WeightOnlyInt8)
def plan_weight_only_int8(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return _plan_weights_only(model, recipe, STATIC_OPS)


@PLANNERS.register(WeightOnlyInt4)
def plan_weight_only_int4(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    """int4 weights by the rule (max|w| / 7): linear layers in blocks along their input dimension,
    convolutions per output channel; depthwise convolutions int8 per channel; embedding tables
    int8 per row, or int4 per row with `embedding_bits` 4 (one scale per row is what every
    target's int4 lookup can hold: TFLite's EMBEDDING_LOOKUP takes int4 per row, not in blocks)."""
    onnx_model = model.onnx_model()
    kept = float_nodes(onnx_model, model.layers, recipe)
    block = recipe.scheme.block_size or None
    weights = {}
    for node, name, w in weight_inputs(onnx_model, STATIC_OPS, set(kept)):
        out_axis = weight_axis(node, w.ndim)
        if _depthwise(node, w):  # a few taps per channel: int4 would cost most of the error, save little
            scales = qmath.weight_scales(w, out_axis)
            weights[name] = WeightParams(scale=scales.tolist(), zero_point=[0] * len(scales), axis=out_axis,
                                         layer=model.layers.get(node.name, node.name))
            continue
        # blocks along a linear layer's input axis (the other one); an input size that is not a
        # multiple of the block (Core ML's blocks divide the axis) gets one scale per output channel
        blocked = block is not None and w.ndim == 2 and node.op_type in ("MatMul", "Gemm") \
            and w.shape[1 - out_axis] % block == 0
        axis = 1 - out_axis if blocked else out_axis
        scales = qmath.int4_scales(w, axis, block if blocked else None)
        weights[name] = WeightParams(scale=scales.ravel().tolist(), zero_point=[0] * scales.size, axis=axis,
                                     layer=model.layers.get(node.name, node.name), bits=4,
                                     block=block if blocked else None)
    return QuantPlan(scheme=recipe.scheme.name, weights=weights, quantized_ops=list(STATIC_OPS), float_nodes=kept,
                     embeddings=plan_embeddings(model, onnx_model, set(kept), weights, bits=recipe.embedding_bits))


def _depthwise(node, weight: np.ndarray) -> bool:
    """A Conv with one input channel per group: one small kernel per channel."""
    return node.op_type == "Conv" and weight.ndim >= 3 and weight.shape[1] == 1 and \
        any(a.name == "group" and a.i > 1 for a in node.attribute)


def _plan_weights_only(model: FloatModel, recipe: Recipe, op_types: tuple[str, ...]) -> QuantPlan:
    """int8 weights of `op_types` by the rule (max|w| / 127), activations left to the runtime."""
    onnx_model = model.onnx_model()
    kept = float_nodes(onnx_model, model.layers, recipe)
    weights = plan_weights(model, recipe, op_types, onnx_model, set(kept))
    notes = []
    if model.learned_qparams:
        notes.append(f"QAT: {recipe.scheme.name} quantizes weights by its rule (max|w| / 127, as ai-edge-quantizer "
                     "does for TFLite), not with the learned numbers; the int8 recipe uses them")
    return QuantPlan(scheme=recipe.scheme.name, weights=weights, quantized_ops=list(op_types), float_nodes=kept,
                     embeddings=plan_embeddings(model, onnx_model, set(kept), weights),
                     notes=notes)


@PLANNERS.register(Int8Static)
def plan_int8(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return _plan_static(model, recipe, calib, qmath.activation_qparams)


@PLANNERS.register(Int16x8)
def plan_int16x8(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return _plan_static(model, recipe, calib, qmath.activation_qparams_int16)


def _plan_static(model: FloatModel, recipe: Recipe, calib: Dataset, activation_qparams) -> QuantPlan:
    """Static schemes: calibrated activation parameters by `activation_qparams`, int8 weights;
    numbers learned by QAT replace the calibrated ones (int8 activations only: QAT learns 8-bit
    grids, not int16 ones)."""
    from edgeport.quantizers.calibration import activation_ranges

    onnx_model = model.onnx_model()
    precisions = resolve_precisions(onnx_model, model.layers, recipe)
    kept = [n for n, p in precisions.items() if p == "float"]
    mixed = {n: p for n, p in precisions.items() if p != "float"}
    data = calib.take(recipe.calib_samples)
    origin: dict[str, str] = {}
    weights = plan_weights(model, recipe, STATIC_OPS, onnx_model, set(kept), origin)
    embeddings = plan_embeddings(model, onnx_model, set(kept), weights)
    # calibrated on the values every target looks up: the tables' int8 rows, scaled back
    ranges, observed = activation_ranges(_with_int8_rows(onnx_model, embeddings), data, recipe.calibration,
                                         recipe.percentile)
    activations = {}
    for name, (lo, hi) in ranges.items():
        scale, zero_point = activation_qparams(lo, hi)
        activations[name] = ActivationParams(float(scale), int(zero_point), (lo, hi), observed[name])
    learned_ranges = (model.learned_qparams or {}).get("activations", {})
    unused_ranges = list(learned_ranges)
    if learned_ranges and recipe.scheme.activation_bits == 8:
        placed, unused_ranges = learned_activations(onnx_model, model.layers, learned_ranges, observed)
        activations.update(placed)
        origin.update(dict.fromkeys(placed, "qat"))
    _share_concat_grids(onnx_model, activations, activation_qparams, set(origin))  # before: pass-through
    for node in onnx_model.graph.node:  # graph order is topological: sharing chains propagate
        if node.op_type in PASS_THROUGH_OPS and node.input and node.input[0] in activations:
            for out in node.output:
                if out in activations:
                    # the input's grid, the output's own observed range: another graph (PT2E) finds
                    # the tensor by what it sees there (a Split's half sees less than the whole)
                    activations[out] = replace(activations[node.input[0]], observed=activations[out].observed)
                    if node.input[0] in origin:
                        origin[out] = origin[node.input[0]]
    _clip_before_relus(onnx_model, activations, set(origin))
    plan = QuantPlan(
        scheme=recipe.scheme.name, activations=activations, weights=weights, embeddings=embeddings,
        quantized_ops=sorted({n.op_type for n in onnx_model.graph.node}),
        float_nodes=kept, precisions=mixed, mixed_activations=_mixed_activations(onnx_model, activations, mixed),
        origin=origin,
        calibration={"method": recipe.calibration, "samples": len(data), "source": calib.source,
                     **({"percentile": recipe.percentile} if recipe.calibration == "percentile" else {})})
    plan.notes = _origin_notes(plan, model, unused_ranges, recipe.scheme.activation_bits == 8)
    return plan


def _share_concat_grids(onnx_model, activations: dict[str, ActivationParams], activation_qparams,
                        kept: set[str] = frozenset()) -> None:
    """A Concat's output and the inputs that compute ops make take one grid spanning all of them
    (in place), as LiteRT's CONCATENATION requires. Its converter gives a tensor feeding a concat
    the concat's scale for every reader: a conv reading the same tensor had its bias quantized for
    the tensor's own scale (YOLOv8's second bottleneck of each block on android: 2 dB). Inputs made
    by pass-through ops (a Split's halves, a Resize) keep their input's grid (LiteRT requantizes
    those), as do tensors read by another Concat too, graph inputs and QAT-learned tensors (`kept`).
    Runs before the pass-through ops take their inputs' grids, so those follow."""
    producer = {out: node for node in onnx_model.graph.node for out in node.output}
    concats: dict[str, int] = {}
    for node in onnx_model.graph.node:
        if node.op_type == "Concat":
            for name in node.input:
                concats[name] = concats.get(name, 0) + 1
    for node in onnx_model.graph.node:
        if node.op_type != "Concat" or not node.output or node.output[0] not in activations \
                or node.output[0] in kept or not all(name in activations for name in node.input):
            continue
        shared = [name for name in node.input if name in producer and producer[name].op_type not in PASS_THROUGH_OPS
                  and concats.get(name) == 1 and name not in kept]
        if not shared:
            continue
        names = [node.output[0], *shared]
        lo = min(activations[n].range[0] for n in names)
        hi = max(activations[n].range[1] for n in names)
        scale, zero_point = activation_qparams(lo, hi)
        for name in names:
            activations[name] = ActivationParams(float(scale), int(zero_point), (lo, hi), activations[name].observed)


def _clip_before_relus(onnx_model, activations: dict[str, ActivationParams], kept: set[str] = frozenset()) -> None:
    """A tensor read only by a Relu / Clip takes that op's output grid (in place): quantizing it
    there clips as the op does, so the op changes nothing. That is what a fused int8 graph does
    (onnxruntime drops the ReLU and quantizes the conv on the ReLU's grid; LiteRT fuses it), and
    it keeps that precision when the ReLU cannot be dropped: in a mixed int8 / int16 graph,
    onnxruntime keeps a ReLU whose output is converted, and the conv's own grid, spanning its
    negative values too, was up to 2.5x coarser (PP-OCR's classifier lost 2 points of cosine).
    Tensors in `kept` (numbers learned by QAT) keep theirs."""
    readers: dict[str, int] = {}
    for node in onnx_model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in onnx_model.graph.output}
    for node in onnx_model.graph.node:
        if node.op_type not in ("Relu", "Clip") or not node.input or not node.output:
            continue
        source, result = node.input[0], node.output[0]
        if source in activations and result in activations and readers.get(source) == 1 and source not in outputs \
                and source not in kept:
            grid = activations[result]
            activations[source] = ActivationParams(grid.scale, grid.zero_point, grid.range, activations[source].observed)


def _mixed_activations(onnx_model, activations: dict[str, ActivationParams],
                       precisions: dict[str, str]) -> dict[str, ActivationParams]:
    """The inputs and outputs of the nodes an override gives another activation precision, in that
    precision (int16: symmetric, int8: asymmetric, from the same calibrated range): a tensor
    between an int8 and an int16 node is converted from one to the other.

    One exception: the int16 output of a Relu or Clip is asymmetric, its zero point at -32768.
    onnxruntime's QDQ quantizer drops such an op and lets its output grid do the clipping, which
    a symmetric grid does not (negatives came through: digits fell to 9 dB SQNR). Only ONNX
    writes per-layer int16, and ONNX's int16 QDQ takes any zero point."""
    rules = {"int8": qmath.activation_qparams, "int16": qmath.activation_qparams_int16}
    mixed: dict[str, ActivationParams] = {}
    clipped = {name for node in onnx_model.graph.node if precisions.get(node.name) == "int16"
               and node.op_type in ("Relu", "Clip") for name in node.output}  # also as the next node's input
    for node in onnx_model.graph.node:
        precision = precisions.get(node.name)
        if precision is None:
            continue
        for name in (*node.input, *node.output):
            if name in activations:
                params = activations[name]
                grid = precision == "int16" and name in clipped
                rule = qmath.activation_qparams_uint16_grid if grid else rules[precision]
                scale, zero_point = rule(*params.range)
                mixed[name] = ActivationParams(float(scale), int(zero_point), params.range, params.observed)
    return mixed


def _origin_notes(plan: QuantPlan, model: FloatModel, unused_ranges: list[str],
                  learned_ranges_used: bool) -> list[str]:
    """Report lines on the numbers that are not the recipe's rule: learned by QAT, binary / ternary."""
    notes = []
    learned = model.learned_qparams
    if learned:
        qat_weights = {n: w for n, w in plan.weights.items() if plan.origin.get(n) == "qat"}
        placed = {model.params.torch_path(n) for n in qat_weights}
        unused = [f"weight {path}" for path in learned_weights(learned) if path not in placed]
        placed_ranges = [p for p in learned.get("activations", {}) if p not in unused_ranges]
        if learned_ranges_used:
            unused += [f"range of {p}" for p in unused_ranges]
        elif unused_ranges:
            unused.append(f"the activation ranges ({plan.scheme} activations are calibrated)")
        notes.append(learned_note(learned.get("bits"), [w.layer for w in qat_weights.values()], placed_ranges, unused))
    lowbit = {w.layer: plan.origin[n] for n, w in plan.weights.items() if plan.origin.get(n) in ("binary", "ternary")}
    if lowbit:
        notes.append(lowbit_note(lowbit))
    return notes
