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
from edgeport.exporters.coreml_lowbit import alpha_var, lut_bits, stored_alpha
from edgeport.exporters.coreml_weights import compress_program, quantize_embeddings
from edgeport.exporters.coreml_torch_ops import register as register_torch_ops
from edgeport.exporters.reproducible import canonical_mlpackage
from edgeport.params import normalized
from edgeport.quantizers.plan import QuantPlan
from edgeport.quiet import quiet
from edgeport.recipe import Recipe
from edgeport.schemes import DynamicInt8, Float32, Fp16, Int8Static, Int16x8, WeightOnlyInt4, WeightOnlyInt8
from edgeport.targets import Target
from edgeport.targets.options import IosOptions

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
            inputs = [ct.TensorType(name=s.name, shape=shape, dtype=np.float32)
                      for s, shape in zip(model.inputs, shapes)]
            try:
                mlmodel = ct.convert(traced, inputs=inputs, **io_dtype, **settings)
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
            compress_notes, rewritten = compress_program(program, job, row, options.ios_version)
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
        reference = _float_reference(traced, inputs, io_dtype, settings,
                                     path.parent.parent / f".reference-{target.name}" / path.name)
        return Artifact(target.name, self.format, path, described, notes=notes, layers_reference=reference)

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


LAYERS_KEY = "edgeport.layers"  # the float reference's metadata: {op name: module path}


def _float_reference(traced, inputs, io_dtype: dict, settings: dict, out: Path):
    """Writes, when `--layers` asks, the fp32 ML Program coremltools converts from the same traced
    module as the artifact (the same conversion and passes, so its ops carry the artifact's op
    names, less the `_cast_fp16` an fp16 program adds); its metadata maps each op to the module it
    came from (the saved program keeps no scopes). The artifact is left as it is."""

    def write() -> Path:
        if out.exists():
            return out
        import json

        with quiet():
            import coremltools as ct
            from coremltools.converters.mil.mil.scope import ScopeSource

            register_torch_ops()
            mlmodel = ct.convert(traced, inputs=inputs, **io_dtype,
                                 **{**settings, "compute_precision": ct.precision.FLOAT32})
            layers = {}
            for op in mlmodel._mil_program.functions["main"].operations:
                names = op.scopes.get(ScopeSource.TORCHSCRIPT_MODULE_NAME, []) if op.scopes else []
                if op.op_type != "const" and len(names) > 1:
                    layers[op.name] = ".".join(names[:-1])  # the last is TorchScript's value name
            mlmodel.user_defined_metadata[LAYERS_KEY] = json.dumps(layers, sort_keys=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            mlmodel.save(str(out))
        return out

    return write


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

    # nn.MultiheadAttention's / TransformerEncoder's fast path (inference-only fused kernels)
    # makes a trace take other ops on some runs; tracing without it records the layers' plain
    # ops, as torch.onnx does (the same numbers, except at positions a padding mask hides, which
    # the fast path sets to zero)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        return torch.jit.trace(module, example_inputs)
    except torch.jit.TracingCheckError as exc:
        where = _first_difference_scope(str(exc), module)
        raise InputError(f"ios: tracing the PyTorch model for Core ML (torch.jit.trace) is not deterministic{where}: "
                         "two traces give different graphs (a data-dependent branch or a fast path, "
                         "e.g. nn.TransformerEncoder's nested tensors with a padding mask)") from None
    except Exception as exc:  # noqa: BLE001 - the tracer raises many types for untraceable code
        raise InputError(f"ios: tracing the PyTorch model for Core ML (torch.jit.trace) failed: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


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
