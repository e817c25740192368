"""Core ML exporter (ML Program .mlpackage) for iOS, applying the shared recipe.

coremltools converts the traced PyTorch model; edgeport then rewrites the weights of conv /
linear ops itself with Core ML's constexpr ops, fed with the recipe's numbers:
  - int8 weights: `constexpr_affine_dequantize` with the plan's per-channel scales and the
    same int8 values as the ONNX artifact;
  - palettes: `constexpr_lut_to_dense` with the plan's k-means palette;
  - pruning: `constexpr_sparse_to_dense` with the plan's magnitude mask;
  - binary / ternary weights (α_c·{±1}, α_c·{-1, 0, +1}): 1-bit / 2-bit palettes
    (`coreml_lowbit`), with the plan's α under the int8 recipe.
Deviations (scales stored in fp16, weights Core ML renamed by fusing BatchNorm) are counted and
stated in the artifact notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.errors import InputError
from edgeport.exporters import Artifact, Exporter, ExportJob, Refusal, Refuse, torch_job
from edgeport.exporters.coreml_activations import activation_inputs, calibrate, quantize_activations
from edgeport.exporters.coreml_lowbit import (
    alpha_var, find_lowbit, lowbit_note, lut_bits, lut_to_dense, rewrite_lowbit, stored_alpha)
from edgeport.exporters.coreml_mil import replace_weight
from edgeport.exporters.coreml_torch_ops import register as register_torch_ops
from edgeport.exporters.reproducible import canonical_mlpackage
from edgeport.params import normalized
from edgeport.quantizers import compress, qmath
from edgeport.quantizers.plan import QuantPlan, embedding_note
from edgeport.quiet import quiet
from edgeport.recipe import Recipe
from edgeport.schemes import DynamicInt8, Float32, Fp16, Int8Static, Int16x8, WeightOnlyInt4, WeightOnlyInt8
from edgeport.targets import Target
from edgeport.targets.options import IosOptions

WEIGHT_OPS = ("conv", "linear")
ATTRIBUTES = ("shape", "axis", "vector_axis")  # inputs of constexpr ops that describe, not store, a weight


@dataclass(frozen=True)
class CoreMLScheme:
    """How Core ML holds a scheme: int8 weights (`constexpr_affine_dequantize`), int8 activations
    too (W8A8, quantize / dequantize pairs), a forced compute precision, and, for int8 weights,
    whether a weight absent from the plan (Core ML fused it) takes the recipe's rule (schemes
    that quantize every conv / linear weight) or stays float (dynamic int8: MatMul/Gemm only)."""

    int8_weights: bool = False
    int4: bool = False  # the integer weights are int4 (constexpr_blockwise_shift_scale, iOS18)
    w8a8: bool = False
    precision: str | None = None
    rule_for_unplanned: bool = False


def _compressions(recipe: Recipe) -> list[str]:
    return [n for n, on in (("int8 weights", recipe.scheme.int8_weights), ("palettization", recipe.palettize),
                            ("pruning", recipe.prune)) if on]


SCHEMES = {
    Float32: CoreMLScheme(),
    Fp16: CoreMLScheme(precision="fp16"),
    DynamicInt8: CoreMLScheme(int8_weights=True),
    WeightOnlyInt8: CoreMLScheme(int8_weights=True, rule_for_unplanned=True),
    WeightOnlyInt4: CoreMLScheme(int8_weights=True, int4=True, rule_for_unplanned=True),
    Int8Static: CoreMLScheme(int8_weights=True, w8a8=True, rule_for_unplanned=True),
    Int16x8: Refuse("Core ML has no int16 activations; use --quantize int8 (W8A8, iOS17+)"),
}
REFUSALS = (
    Refusal(lambda recipe, options: isinstance(recipe.scheme, Fp16) and options.precision == "fp32",
            "recipe fp16 conflicts with --ios-precision fp32"),
    Refusal(lambda recipe, options: isinstance(recipe.scheme, Int8Static) and options.ios_version < 17,
            "the int8 recipe (W8A8: int8 activations) needs --ios-target iOS17 or later; "
            "--quantize dynamic-int8 gives int8 weights from iOS16"),
    Refusal(lambda recipe, options: isinstance(recipe.scheme, WeightOnlyInt4) and options.ios_version < 18,
            "int4 weights need --ios-target iOS18 or later (constexpr_blockwise_shift_scale)"),
    Refusal(lambda recipe, options: len(_compressions(recipe)) > 1,
            lambda recipe, options: f"{' + '.join(_compressions(recipe))} together need iOS18 combined constexpr "
                                    "ops, which this edgeport version does not write; choose one"),
    Refusal(lambda recipe, options: bool(_compressions(recipe)) and options.ios_version < 16,
            lambda recipe, options: f"{_compressions(recipe)[0]} needs --ios-target iOS16 or later (constexpr ops)"),
)


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


def compress_program(program, job: ExportJob, ios_version: int) -> tuple[list[str], set[str]]:
    """Rewrite conv/linear weights of `program` per the recipe; return notes on what was done and
    the names of the ops that now compute the rewritten layers (conv, linear, or the matmul of a
    binary / ternary linear layer): W8A8 quantizes their inputs."""
    recipe = job.recipe
    row = SCHEMES[type(recipe.scheme)]
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
    a scale per row (`constexpr_affine_dequantize` on axis 0); returns the report's notes. A table
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
        build, _ = _int8_weight(tables[name], job.plan.embeddings[name], job.recipe, op.x.val.dtype, op,
                                f"{normalized(name)}_int8")
        replace_weight(block, op, build, old=op.x)
        done.add(name)
    missing = sorted(job.plan.embeddings[n].layer for n in job.plan.embeddings if n not in done)
    notes = [embedding_note(job.plan)] if done else []
    if missing:
        notes.append(f"embedding tables not found in the Core ML program, left float: {', '.join(missing)}")
    return notes


def _relative_error(stored: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(stored - exact) / np.maximum(np.abs(exact), np.finfo(np.float32).tiny)))


class CoreMLExporter(Exporter):
    format = "mlpackage"
    suffix = ".mlpackage"
    # coremltools 9 does not convert ONNX: an .onnx source is converted to a module first
    # (edgeport.onnx_torch says why that way)
    needs_torch_source = True
    options_type = IosOptions
    schemes = SCHEMES
    refusals = REFUSALS

    def _export(self, job: ExportJob, target: Target, path: Path) -> Artifact:
        options = self.options(job.options, target)
        row = self.handler(job.recipe)
        if row.precision is not None:
            options = IosOptions(options.deployment_target, row.precision)
        with quiet():  # coremltools prints version warnings and progress bars
            import coremltools as ct
            import torch
            from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

            register_torch_ops()  # conversions coremltools lacks or gets wrong (coreml_torch_ops)
            job = torch_job(job)
            model = job.model
            # the uncompressed module: Core ML stores pruning and palettes in its own compressed formats
            module, examples, shapes = _rank_one_scalars((job.uncompressed or model).torch_module,
                                                         model.example_inputs, model.inputs)
            traced = _trace(module, examples)
            settings = dict(convert_to="mlprogram", skip_model_load=True,
                            minimum_deployment_target=getattr(ct.target, options.deployment_target),
                            compute_precision=ct.precision.FLOAT16 if options.precision == "fp16"
                            else ct.precision.FLOAT32)
            io_dtype = {"outputs": [ct.TensorType(name=s.name, dtype=np.float32) for s in model.outputs]} \
                if options.ios_version >= 16 else {}
            try:
                mlmodel = ct.convert(traced, inputs=[ct.TensorType(name=s.name, shape=shape, dtype=np.float32)
                                                     for s, shape in zip(model.inputs, shapes)],
                                     **io_dtype, **settings)
            except Exception as exc:  # noqa: BLE001 - the converter's errors name the torch op
                _raise_conversion_error(exc, traced)
            notes = [f"deployment target {options.deployment_target}, compute precision {options.precision}"]
            renamed = [f"{s.name} -> {f.name}" for s, f in zip(model.inputs, mlmodel.get_spec().description.input)
                       if s.name != f.name]
            if renamed:
                notes.append(f"inputs renamed by coremltools (reserved or invalid MIL names): {', '.join(renamed)}")
            scalars = [s.name for s in model.inputs if not s.shape]
            if scalars:
                notes.append(f"scalar input(s) {', '.join(scalars)} take shape [1] (Core ML has no rank-0 inputs)")
            program = mlmodel._mil_program
            calibrated = None
            if row.w8a8:  # calibrate the float graph before touching weights
                calibrated = calibrate(mlmodel, activation_inputs(program), job)
            compress_notes, rewritten = compress_program(program, job, options.ios_version)
            embedding_notes = quantize_embeddings(program, job, options.ios_version)
            notes += compress_notes + embedding_notes
            if rewritten or calibrated is not None or embedding_notes:
                if calibrated is not None:  # W8A8: activations only where the weights are int8 (not kept-float layers)
                    notes += quantize_activations(program, calibrated, job, rewritten)
                PASS_REGISTRY["common::dead_code_elimination"](program)
                mlmodel = ct.convert(program, pass_pipeline=ct.PassPipeline.EMPTY, **settings)
            mlmodel.short_description = f"{model.name}: {job.recipe.describe()} (edgeport)"
            mlmodel.save(str(path))
            canonical_mlpackage(path)  # no date, no random identifiers: the same bytes on every export
        described = job.recipe.describe()
        if described.startswith("fp32") and options.precision == "fp16":
            described = described.replace("fp32", "fp16 compute", 1)  # Core ML's default precision
        return Artifact(target.name, self.format, path, described, notes=notes)

    def describe(self, path: Path) -> dict:
        """Ops and weight bytes by storage kind: "dense float16", "constexpr_affine_dequantize" (int8
        values and scales), "lut N-bit" (packed N-bit indices, their LUT and, for binary / ternary
        layers, the α multiplier), "constexpr_sparse_to_dense"."""
        from collections import Counter

        from edgeport.runtimes.coreml import load_program

        _, program = load_program(str(path))
        ops = list(program.functions["main"].operations)
        consumers = consumers_of(ops)
        stored_as = {}  # const var name -> storage kind, for the parts of compressed weights
        for op in ops:
            if op.op_type == "constexpr_lut_to_dense":
                kind = f"lut {lut_bits(op)}-bit"
                alpha = alpha_var(op, consumers)
                parts = [v for k, v in op.inputs.items() if k not in ATTRIBUTES] + ([alpha] if alpha is not None else [])
                stored_as.update((var.name, kind) for var in parts)
            elif op.op_type.startswith("constexpr"):
                stored_as.update((var.name, op.op_type) for key, var in op.inputs.items() if key not in ATTRIBUTES)
        weight_bytes: Counter = Counter()
        for op in ops:
            var = op.outputs[0]
            if op.op_type != "const" or var.val is None:
                continue
            value = np.asarray(var.val)
            kind = stored_as.get(var.name)
            if kind is None and value.size < 16:
                continue  # attributes and shapes, not weights
            weight_bytes[kind or f"dense {value.dtype}"] += _stored_bytes(var, value)
        return {"ops": dict(Counter(op.op_type for op in ops if op.op_type != "const")),
                "weight_bytes": dict(weight_bytes)}

    def read_params(self, path: Path, plan: QuantPlan) -> dict:
        """Per-channel int8 scales stored in the package vs the plan, and the α of binary / ternary
        palettes (fp16 storage rounding allowed: both are compared after rounding to the package's
        dtype)."""
        from edgeport.runtimes.coreml import load_program

        _, program = load_program(str(path))
        ops = list(program.functions["main"].operations)
        consumers = consumers_of(ops)
        # `compress_program` names each rewritten weight `<normalized plan name>_<kind>`
        planned = {**plan.weights, **plan.embeddings}
        by_key = {normalized(n): n for n in planned}
        checked, differ, palettes = 0, [], 0
        for op in ops:
            if op.op_type == "constexpr_affine_dequantize":
                name = by_key.get(normalized(op.name.removesuffix("_int8").removesuffix("_to_fp16")))
                stored = None if name is None else np.atleast_1d(np.asarray(op.inputs["scale"].val))
            elif op.op_type == "constexpr_blockwise_shift_scale":  # int4: Core ML's layout may be the
                name = by_key.get(normalized(op.name.removesuffix("_int4")))  # plan's transposed: as sets
                stored = None if name is None else np.sort(np.asarray(op.inputs["scale"].val).ravel())
                if stored is not None:
                    checked += 1
                    if not np.array_equal(stored, np.sort(planned[name].scale_array().astype(stored.dtype))):
                        differ.append(name)
                continue
            elif op.op_type == "constexpr_lut_to_dense":
                name = by_key.get(normalized(op.name.removesuffix("_binary").removesuffix("_ternary")))
                alpha = None if name is None else stored_alpha(op, consumers)
                stored = None if alpha is None else alpha.astype(op.inputs["lut"].val.dtype)
                palettes += stored is not None
            else:
                continue
            if stored is None:
                continue
            checked += 1
            if not np.array_equal(stored, planned[name].scale_array().astype(stored.dtype)):
                differ.append(name)
        values = {"tensors_checked": checked, "exact": checked - len(differ), "differ": differ,
                  "storage": "scales compared after rounding to the package's scale dtype"}
        if palettes:
            values["lowbit_palettes"] = palettes
        return values


def consumers_of(ops) -> dict[str, list]:
    """Var name -> the ops that take it as an input."""
    consumers: dict[str, list] = {}
    for op in ops:
        for value in op.inputs.values():
            for var in value if isinstance(value, (list, tuple)) else [value]:
                consumers.setdefault(var.name, []).append(op)
    return consumers


def _stored_bytes(var, value: np.ndarray) -> int:
    """Bytes a const takes in the package: sub-byte types (iOS18 LUT indices) are packed."""
    from coremltools.converters.mil.mil import types

    if types.is_tensor(var.sym_type) and types.is_sub_byte(var.dtype):
        return -(-value.size * var.dtype.get_bitwidth() // 8)
    return value.nbytes


def _rank_one_scalars(module, examples, specs):
    """Core ML inputs have rank 1 or more: a module whose scalar inputs (a sample rate) are taken
    as shape [1] and read back as scalars; its example inputs and the Core ML input shapes."""
    import torch

    shapes = [s.concrete_shape(1) or (1,) for s in specs]
    scalar = [not s.shape for s in specs]
    if not any(scalar):
        return module, examples, shapes

    class RankOneScalars(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = module

        def forward(self, *xs):
            return self.model(*(x.reshape(()) if flag else x for x, flag in zip(xs, scalar)))

    return RankOneScalars().eval(), tuple(x.reshape(1) if flag else x for x, flag in zip(examples, scalar)), shapes


def _trace(module, example_inputs):
    """torch.jit.trace of the module (coremltools converts TorchScript), or one-line InputError.

    The tracer runs the traced graph again and compares: a module whose trace changes between
    runs (a fast path taken on some runs, e.g. nn.TransformerEncoder's nested tensors with a
    src_key_padding_mask; data-dependent control flow) fails that check, and Core ML would get
    a graph that is not the model's."""
    import torch

    try:
        return torch.jit.trace(module, example_inputs)
    except torch.jit.TracingCheckError as exc:
        where = _first_difference_scope(str(exc), module)
        raise InputError(f"ios: tracing the PyTorch model for Core ML (torch.jit.trace) is not deterministic{where}: "
                         "two traces give different graphs (a fast path or data-dependent branch; for "
                         "nn.Transformer* layers call torch.backends.mha.set_fastpath_enabled(False) in the "
                         "model factory)") from None
    except Exception as exc:  # noqa: BLE001 - the tracer raises many types for untraceable code
        raise InputError(f"ios: tracing the PyTorch model for Core ML (torch.jit.trace) failed: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from None


def _first_difference_scope(diff: str, module) -> str:
    """' in module <path> (<type>)': the innermost module holding the first difference of the
    tracer's graph diff (its - / + lines carry `scope: __module.a/__module.a.b`), or ''."""
    import re

    first = {}
    for sign, scope in re.findall(r"^\s*([-+]).*?, scope: (\S+)", diff, re.MULTILINE):
        first.setdefault(sign, scope.split("/"))
    common = []
    for parts in zip(*first.values()):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    path = common[-1].removeprefix("__module").removeprefix(".") if common else ""
    if not path:
        return ""
    kind = type(dict(module.named_modules()).get(path, module)).__name__
    return f" in module {path} ({kind})"


def _raise_conversion_error(exc: Exception, traced) -> None:
    """One line naming the PyTorch op and the module that uses it: from the node coremltools was
    converting when it failed (its `convert_nodes` frame), else from the traced graph's scopes."""
    import re

    from edgeport.errors import UnsupportedOpError

    op, module, kind = _failed_node(exc)
    match = re.search(r"op '(\w+)' not implemented", str(exc))
    if match:
        op = match.group(1)
        if module is None:
            scope = next((node.scopeName() for node in traced.inlined_graph.nodes()
                          if node.kind().split("::")[-1] == op), "")
            module = scope.replace("__module.", "").split("/")[-1] or "(top level)"
        raise UnsupportedOpError(f"aten::{op}", module, "Core ML (coremltools) has no conversion for it") from None
    if op is None:
        raise InputError(f"ios: Core ML conversion failed: {_first_line(exc)}") from None
    where = f"{module} ({kind})" if kind else module
    raise InputError(f"ios: Core ML cannot convert PyTorch op aten::{op} in module {where}: coremltools' "
                     f"conversion of it failed ({type(exc).__name__}: {_first_line(exc)})") from None


def _failed_node(exc: Exception) -> tuple[str | None, str | None, str | None]:
    """(torch op, module path, module type) of the node coremltools' `convert_nodes` was converting
    when `exc` was raised (the innermost one for ops in sub-blocks), or Nones."""
    node, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "convert_nodes":
            node = tb.tb_frame.f_locals.get("node", node)
        tb = tb.tb_next
    if node is None:
        return None, None, None
    try:  # the modules around the node, then the node itself (its name and op)
        names, kinds = (part[:-1] for part in node.get_scope_info())
    except Exception:  # noqa: BLE001 - a node without TorchScript scopes
        names, kinds = [], []
    path = ".".join(n for n in names if n)
    return str(node.kind), path or "(top level)", (kinds[-1] if path and kinds else None)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
