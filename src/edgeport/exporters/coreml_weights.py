"""How the Core ML exporter writes the recipe's weights into a converted MIL program: int8
(`constexpr_affine_dequantize`) and int4 (`constexpr_blockwise_shift_scale`) weights with the
plan's numbers, sparse and palettized weights, binary / ternary layers, and int8 embedding tables.
A Core ML const is matched to the plan's ONNX weight by its parameter name, else by value
(`_WeightSource`)."""

from __future__ import annotations

import numpy as np

from edgeport.exporters import ExportJob
from edgeport.exporters.coreml_lowbit import find_lowbit, lowbit_note, lut_to_dense, rewrite_lowbit
from edgeport.exporters.coreml_mil import replace_weight
from edgeport.params import normalized
from edgeport.quantizers import compress, qmath
from edgeport.quantizers.plan import embedding_note
from edgeport.recipe import Recipe

WEIGHT_OPS = ("conv", "linear")


class _WeightSource:
    """Finds the recipe's numbers for a Core ML weight constant.

    coremltools names a weight after its PyTorch parameter (`features.0.weight` becomes
    `features_0_weight`, plus `_to_fp16` in fp16 programs); the model's parameter map gives the
    ONNX initializer of that parameter. A weight it rewrote (BatchNorm fused into a conv) is named
    `const_N`, which no parameter explains: only such a weight is found by value, in the ONNX
    graph, which holds the same fused weight equal up to fp16 rounding. A weight found neither way
    gets the recipe's rule applied to Core ML's values.
    """

    def __init__(self, job: ExportJob):
        from edgeport.quantizers import STATIC_OPS, weight_inputs

        # every conv / linear weight of the ONNX graph, also those the recipe keeps float, so a
        # kept-float weight is recognized (and left alone) rather than taken for a fused one
        model = job.uncompressed or job.model
        self.params = model.params
        self.float_weights = {name: w for _, name, w in weight_inputs(model.onnx_model(), STATIC_OPS, set())}
        self.transposed: set[str] = set()

    def lookup(self, const_name: str, value: np.ndarray) -> str | None:
        """The ONNX weight holding Core ML's const `value`; one an ONNX MatMul holds as [in, out]
        (Core ML's linear takes [out, in]) is recorded in `transposed`."""
        entry = self.params.by_spelling(const_name)
        name = entry.onnx if entry is not None else None
        value = value.astype(np.float32)
        tolerance = 2e-3 * float(np.abs(value).max(initial=0.0)) + 1e-8  # fp16 rounding of the largest weight

        def same(weight: np.ndarray) -> bool:
            return weight.shape == value.shape and np.allclose(weight, value, rtol=1e-3, atol=tolerance)

        if name in self.float_weights:
            weight = self.float_weights[name]
            if same(weight):
                return name
            if weight.ndim == 2 and same(weight.T):
                self.transposed.add(name)
                return name
        # by value only for what the map cannot name: a conv weight Core ML fused with BatchNorm
        for candidate, weight in self.float_weights.items():
            if same(weight):
                return candidate
            if weight.ndim == 2 and same(weight.T):
                self.transposed.add(candidate)
                return candidate
        return None

    def exact(self, name: str) -> np.ndarray:
        """The recipe's float weight `name` in Core ML's layout."""
        weight = self.float_weights[name]
        return weight.T if name in self.transposed else weight


def _int8_weight(exact: np.ndarray, planned, recipe: Recipe, dtype, op, label: str):
    """(builder, relative fp16 rounding of the scales) for int8 weights: the plan's per-channel
    scales, or, for a weight without counterpart in the plan, the recipe's rule."""
    if planned is not None:
        axis, scale = (0 if planned.axis is not None else None), planned.scale_array()
    else:
        axis = 0 if recipe.per_channel else None
        scale = qmath.weight_scales(exact, axis)
    q = qmath.quantize(exact, scale, np.zeros_like(scale, dtype=np.int32), axis=axis)
    stored = scale.astype(dtype)
    rounding = float(np.max(np.abs(stored.astype(np.float32) - scale) / scale))
    return (lambda mb: mb.constexpr_affine_dequantize(
        quantized_data=q, zero_point=np.int8(0), scale=stored if axis is not None else stored[0],
        axis=0, before_op=op, name=label)), rounding


def _int4_weight(exact: np.ndarray, planned, transposed: bool, dtype, op, label: str):
    """Builder for int4 weights (`constexpr_blockwise_shift_scale`): the plan's scales (blocks
    along a linear layer's input, or one per output channel), or for a weight without counterpart
    in the plan the rule per output channel. `exact` is in Core ML's layout; the plan's scales are
    laid out as the ONNX weight, which is Core ML's transposed when `transposed`."""
    from coremltools.converters.mil.mil import types

    if planned is None:
        w, axis, block, transposed = exact, 0, None, False
        scale = qmath.int4_scales(w, 0, None)
    else:
        w, axis, block = (exact.T if transposed else exact), planned.axis, planned.block
        scale = planned.scale_array()
    shape = [1] * w.ndim
    shape[axis] = -1
    if block is not None:
        shape = list(w.shape)
        shape[axis] //= block
    scale = scale.reshape(shape)
    q = qmath.quantize_int4(w, scale, axis, block)
    if transposed:
        q, scale = q.T, scale.T
    int4 = types.nptype_from_builtin(types.int4)
    return lambda mb: mb.constexpr_blockwise_shift_scale(data=q.astype(int4), scale=scale.astype(dtype),
                                                        before_op=op, name=label)


def _sparse_weight(exact: np.ndarray, sparsity: float, dtype, ios_version: int, op, label: str):
    mask = compress.magnitude_mask(exact, sparsity)
    nonzero = exact[mask].astype(dtype)
    if ios_version >= 18:  # iOS18's op takes the mask as a uint1 tensor of the weight's shape
        from coremltools.converters.mil.mil import types

        uint1 = types.nptype_from_builtin(types.uint1)
        return lambda mb: mb.constexpr_sparse_to_dense(nonzero_data=nonzero, mask=mask.astype(uint1),
                                                       before_op=op, name=label)
    packed = np.packbits(mask.ravel().astype(np.uint8), bitorder="little")
    return lambda mb: mb.constexpr_sparse_to_dense(nonzero_data=nonzero, mask=packed, shape=np.uint32(mask.shape),
                                                   before_op=op, name=label)


def _palette_weight(exact: np.ndarray, info: dict | None, bits: int, dtype, ios_version: int, op, label: str):
    lut = np.float32(info["palette"]) if info else compress.kmeans_palette(exact, bits)[0]
    indices = compress.nearest_indices(exact, lut)
    return lambda mb: lut_to_dense(mb, indices, lut[None, :], dtype, ios_version, before_op=op, name=label)


def compress_program(program, job: ExportJob, row, ios_version: int) -> tuple[list[str], set[str]]:
    """Rewrite conv/linear weights of `program` per the recipe; return notes on what was done and
    the names of the ops that now compute the rewritten layers (conv, linear, or the matmul of a
    binary / ternary linear layer): W8A8 quantizes their inputs."""
    recipe = job.recipe
    source = _WeightSource(job)
    block = program.functions["main"]
    int8 = row.int8_weights
    counts = {"plan": 0, "rule": 0}
    rewritten: set[str] = set()
    lowbit, dense_lowbit = {}, []
    scale_rounding = alpha_rounding = 0.0
    for op in list(block.operations):
        if op.op_type not in WEIGHT_OPS or op.weight.op is None or op.weight.op.op_type != "const":
            continue
        w = op.weight.val
        name = source.lookup(op.weight.name, w)
        exact = source.exact(name) if name is not None else w.astype(np.float32)
        # named after the recipe's weight when there is one, so `read_params` can find it again
        key = normalized(name) if name else op.weight.name
        low = find_lowbit(exact, name, job)
        layer = name.removesuffix(".weight") if name else op.name
        if low is not None and ios_version < 16:
            dense_lowbit.append(layer)
        elif low is not None:
            layer_op, stored = rewrite_lowbit(block, op, low, w.dtype, ios_version, f"{key}_{low.kind}")
            rewritten.add(layer_op)
            lowbit[layer] = low
            alpha_rounding = max(alpha_rounding, _relative_error(stored, low.alpha))
            continue
        label = f"{key}_{'int8' if int8 else 'compressed'}"
        if int8:
            planned = job.plan.weights.get(name) if name is not None else None
            if planned is None and (name is not None or not row.rule_for_unplanned):
                continue  # the recipe leaves this layer float (kept float, or convs under dynamic int8)
            depthwise = planned is None and w.ndim >= 3 and w.shape[1] == 1  # one input channel per kernel
            if row.int4 and (planned.bits == 4 if planned is not None else not depthwise):
                build, rounding = _int4_weight(exact, planned, name in source.transposed, w.dtype, op,
                                               f"{key}_int4"), 0.0
            else:
                build, rounding = _int8_weight(exact, planned, recipe, w.dtype, op, label)
            scale_rounding = max(scale_rounding, rounding)
            from_plan = planned is not None
        elif not (recipe.palettize or recipe.prune):
            continue  # float weights
        elif name is not None and name not in job.plan.compression:
            continue  # a layer the recipe keeps float
        elif recipe.prune:
            build = _sparse_weight(exact, recipe.prune, w.dtype, ios_version, op, label)
            from_plan = name is not None
        else:
            info = job.plan.compression.get(name) if name is not None else None
            build = _palette_weight(exact, info, recipe.palettize, w.dtype, ios_version, op, label)
            from_plan = info is not None
        replace_weight(block, op, build)
        rewritten.add(op.name)
        counts["plan" if from_plan else "rule"] += 1
    notes = []
    if counts["plan"] or counts["rule"]:
        what = ("int4 weights (int8 in depthwise convs)" if row.int4 else "int8 weights") if int8 else \
            (f"{recipe.prune:.0%} sparse weights" if recipe.prune else f"{recipe.palettize}-bit palettes")
        notes.append(f"{what}: {counts['plan']} tensors with the recipe's numbers"
                     + (f", {counts['rule']} by the recipe's rule on Core ML's fused weights" if counts["rule"] else ""))
    if scale_rounding:
        notes.append(f"int8 scales stored as fp16 by Core ML's fp16 program: max relative rounding {scale_rounding:.1e}")
    if lowbit:
        notes.append(lowbit_note(lowbit, ios_version, alpha_rounding))
    if dense_lowbit:
        notes.append(f"binary/ternary layers stored dense ({', '.join(dense_lowbit)}): "
                     "1-bit / 2-bit palettes need --ios-target iOS16 or later")
    return notes, rewritten


def quantize_embeddings(program, job: ExportJob, ios_version: int) -> list[str]:
    """Store the plan's embedding tables (the const a `gather` looks rows up in) as int8 rows with
    a scale per row (`constexpr_affine_dequantize` on axis 0), or int4 rows
    (`constexpr_blockwise_shift_scale`); returns the report's notes. A table
    is found by its parameter's name, else by its shape among the plan's tables."""
    from onnx import numpy_helper

    if not job.plan.embeddings:
        return []
    if ios_version < 16:
        return ["embedding tables stay float: int8 tables need --ios-target iOS16 or later (constexpr ops)"]
    model = job.uncompressed or job.model
    tables = {i.name: numpy_helper.to_array(i) for i in model.onnx_model().graph.initializer
              if i.name in job.plan.embeddings}
    block = program.functions["main"]
    done = set()
    for op in list(block.operations):
        if op.op_type != "gather" or op.x.op is None or op.x.op.op_type != "const" or op.x.val is None:
            continue
        entry = model.params.by_spelling(op.x.name)
        name = entry.onnx if entry is not None and entry.onnx in tables else None
        if name is None:
            same = [n for n, t in tables.items() if t.shape == op.x.val.shape]
            name = same[0] if len(same) == 1 else None
        if name is None or tables[name].shape != op.x.val.shape:
            continue
        planned = job.plan.embeddings[name]
        if planned.bits == 4:  # int4 rows (the scheme itself needs iOS18): one scale per row
            build = _int4_weight(tables[name], planned, False, op.x.val.dtype, op, f"{normalized(name)}_int4")
        else:
            build, _ = _int8_weight(tables[name], planned, job.recipe, op.x.val.dtype, op, f"{normalized(name)}_int8")
        replace_weight(block, op, build, old=op.x)
        done.add(name)
    missing = sorted(job.plan.embeddings[n].layer for n in job.plan.embeddings if n not in done)
    notes = [embedding_note(job.plan)] if done else []
    if missing:
        notes.append(f"embedding tables not found in the Core ML program, left float: {', '.join(missing)}")
    return notes


def _relative_error(stored: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(stored - exact) / np.maximum(np.abs(exact), np.finfo(np.float32).tiny)))
