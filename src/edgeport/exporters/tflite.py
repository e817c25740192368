"""TFLite exporter for Android, through the official PyTorch -> LiteRT path (litert-torch).

  - fp32 and fp16 (fp16 weights): `litert_torch.convert`, fp16 with its fp16 recipe;
  - dynamic int8: Google's ai-edge-quantizer on the float model, FULLY_CONNECTED layers only
    (the recipe's dynamic int8 covers MatMul/Gemm, as in ONNX Runtime);
  - weight-only int8: ai-edge-quantizer's weight-only recipe (int8 weights of every supported
    op, dequantized before a float kernel);
  - int16x8, and int8 with float input/output: ai-edge-quantizer's static recipes, fed the
    recipe's calibration ranges;
  - int8: PT2E quantization (`PT2EQuantizer` + `prepare_pt2e` / `convert_pt2e`) whose observers
    are overridden with the recipe's numbers: every activation whose observed calibration range
    equals a planned ONNX tensor's takes the plan's scale and zero point; every weight takes the
    plan's per-channel scales, found by name: the observer reads a `get_attr` of the PyTorch
    parameter path, which the model's parameter map pairs with the plan's ONNX initializer. A
    weight PT2E rewrote (BatchNorm folded into a conv) is found by the scales the observer's own
    max rule gives it instead (the plan's may differ from the rule: learned by QAT, α of a binary
    weight). `read_params` checks the file against the plan afterwards.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgeport.errors import InputError, UnsupportedOpError
from edgeport.exporters import Artifact, Exporter, ExportJob, torch_job
from edgeport.exporters.tflite_names import enclosing_layer, shorten_names, tensor_module_path
from edgeport.exporters.tflite_pt2e import (_drop_integer_observers, _fixed_output_qparams,
                                            _float_batch_norms_to_convs, _module_path, _override_observers,
                                            _unshare_fixed_outputs, _weights_by_name, annotate_by_target,
                                            silu_as_sigmoid_mul)
from edgeport.quantizers import qmath
from edgeport.quantizers.plan import QuantPlan, embedding_note
from edgeport.quiet import quiet
from edgeport.schemes import DynamicInt8, Float32, Fp16, Int8Static, Int16x8, WeightOnlyInt4, WeightOnlyInt8
from edgeport.targets import Target
from edgeport.targets.options import AndroidOptions


def _convert(module, examples, quant_config=None) -> bytes:
    import litert_torch

    try:
        if quant_config is None or getattr(quant_config, "pt2e_quantizer", None) is None:
            module = _with_explicit_broadcasts(module, examples)
        edge = litert_torch.convert(module, examples, quant_config=quant_config)
    except Exception as exc:  # noqa: BLE001 - conversion errors come in many types
        _raise_conversion_error(exc)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        edge.export(str(path))
        return path.read_bytes()


def _with_explicit_broadcasts(module, examples):
    """`module`, or the exported program of it with `explicit_channel_broadcasts` applied when
    it has such a broadcast (other models are converted as given)."""
    import torch

    try:
        program = torch.export.export(module, examples, strict=False)
    except Exception:  # noqa: BLE001 - litert-torch's own export then reports what it cannot read
        return module
    return program.module() if explicit_channel_broadcasts(program) else module


def explicit_channel_broadcasts(program) -> int:
    """Expand, in place, each operand of an element-wise mul / add / sub / div of 4-D tensors that
    broadcasts along the channel axis (size 1 against C > 1) to the output's shape; the number
    of operands expanded.

    litert-torch's NCHW -> NHWC layout pass writes such an op as a `tfl.mul` whose operands it
    no longer finds broadcast-compatible ("operands don't have broadcast-compatible shapes"):
    timm's MobileViTv2 attention multiplies key [B, d, P, N] by scores [B, 1, P, N] after a
    conv. An explicit expand (BROADCAST_TO) converts."""
    import torch

    aten = torch.ops.aten
    elementwise = {aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor, aten.div.Tensor}
    graph, count = program.graph_module.graph, 0
    for node in list(graph.nodes):
        out = node.meta.get("val")
        if node.target not in elementwise or not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[1] == 1:
            continue
        args = list(node.args)
        for i, arg in enumerate(args[:2]):
            value = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else None
            if isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[1] == 1:
                with graph.inserting_before(node):
                    args[i] = graph.call_function(aten.expand.default, (arg, list(out.shape)))
                args[i].meta["val"] = value.expand(out.shape)
                count += 1
        node.args = tuple(args)
    if count:
        program.graph_module.recompile()
    return count


def _raise_conversion_error(exc: Exception) -> None:
    import re

    text = str(exc)
    op = re.search(r"OpOverload\(op='([\w.]+)'", text) or re.search(r"(aten[.:]+\w+)", text)
    node = re.search(r"node %(\w+)", text) or re.search(r"%(\w+)\s*:", text)
    if op:
        raise UnsupportedOpError(op.group(1), node.group(1) if node else "?",
                                 "the PyTorch -> LiteRT converter has no conversion for it") from None
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    raise InputError(f"android: PyTorch -> LiteRT conversion failed: {first}") from None


def _float(job: ExportJob) -> bytes:
    return _convert(job.model.torch_module, job.model.example_inputs)


def float_tflite(job: ExportJob) -> bytes:
    """The float .tflite of the job's module, converted as the android exporter converts its
    baseline: its tensors carry the same module-scoped names as the int8 file's (`int8_tflite`)."""
    return _float(torch_job(job))


def _fp32(job: ExportJob, float_model: bytes, options: AndroidOptions) -> tuple[bytes, list[str]]:
    return float_model, []


def _fp16(job: ExportJob, float_model: bytes, options: AndroidOptions) -> tuple[bytes, list[str]]:
    from litert_torch.generative.quantize import quant_recipes

    return _convert(job.model.torch_module, job.model.example_inputs, quant_recipes.full_fp16_recipe()), []


def _int8_weights(job: ExportJob, float_model: bytes, add_config: str, op: str) -> bytes:
    """ai-edge-quantizer with int8 weights and float activations: `add_config` is its
    `add_dynamic_config` (int8 compute on activations quantized at run time) or
    `add_weight_only_config` (weights dequantized before a float kernel), for `op`."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(float_model)
    getattr(qt, add_config)(".*", getattr(recipe.TFLOperationName, op), num_bits=8,
                            granularity=recipe.QuantGranularity.CHANNELWISE if job.recipe.per_channel
                            else recipe.QuantGranularity.TENSORWISE)
    return _quantized(qt, f"int8 weights ({add_config.removeprefix('add_').removesuffix('_config')})")


def _dynamic_int8(job: ExportJob, float_model: bytes, options: AndroidOptions) -> tuple[bytes, list[str]]:
    return _int8_weights(job, float_model, "add_dynamic_config", "FULLY_CONNECTED"), \
        ["dynamic int8: FULLY_CONNECTED weights int8 (ai-edge-quantizer), other layers fp32"]


def _weight_only_int8(job: ExportJob, float_model: bytes, options: AndroidOptions) -> tuple[bytes, list[str]]:
    return _int8_weights(job, float_model, "add_weight_only_config", "ALL_SUPPORTED"), \
        ["weight-only int8 (ai-edge-quantizer): int8 weights dequantized before float kernels; activations fp32"]


def _weight_only_int4(job: ExportJob, float_model: bytes, options: AndroidOptions) -> tuple[bytes, list[str]]:
    """ai-edge-quantizer's int4 weights: per output channel, dequantized before float kernels; with
    blocks, FULLY_CONNECTED weights in blocks along the input (its blockwise int4 is a dynamic
    config: LiteRT quantizes the layer's input to int8 at run time, as onnxruntime's MatMulNBits
    does)."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(float_model)
    qt.add_weight_only_config(".*", recipe.TFLOperationName.ALL_SUPPORTED, num_bits=4,
                              granularity=recipe.QuantGranularity.CHANNELWISE)
    qt.add_weight_only_config(".*", recipe.TFLOperationName.DEPTHWISE_CONV_2D, num_bits=8,
                              granularity=recipe.QuantGranularity.CHANNELWISE)  # as the plan: int8
    block = job.recipe.scheme.block_size
    notes = ["weight-only int4 (ai-edge-quantizer): int4 weights per output channel (int8 in depthwise convs), "
             "dequantized before float kernels"]
    if block:
        qt.add_dynamic_config(".*", recipe.TFLOperationName.FULLY_CONNECTED, num_bits=4,
                              granularity=getattr(recipe.QuantGranularity, f"BLOCKWISE_{block}"))
        notes.append(f"FULLY_CONNECTED weights int4 in blocks of {block}, its input quantized to int8 at run time "
                     "(LiteRT's blockwise int4 kernel)")
    return _quantized(qt, "weight-only int4"), notes


def _quantized(qt, what: str) -> bytes:
    """ai-edge-quantizer's result, or one line naming what it could not do."""
    try:
        return bytes(qt.quantize().quantized_model)
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"ai-edge-quantizer cannot write {what} for this model: {first[:300]}") from None


def _with_int8_embeddings(job: ExportJob) -> tuple[ExportJob, list[str]]:
    """`job` with the plan's embedding tables as int8 rows in its module (`edgeport.quantizers.
    embeddings`), and the report's notes. The C library starts from `job` as it is."""
    from dataclasses import replace

    from edgeport.quantizers.embeddings import with_int8_embeddings

    module, done, missing = with_int8_embeddings(job.model.torch_module, job.model.params, job.plan)
    notes = [embedding_note(job.plan)] if done else []
    if missing:
        notes.append(f"embedding tables left float (not an nn.Embedding of the PyTorch module): {', '.join(missing)}")
    return (replace(job, model=replace(job.model, torch_module=module)) if done else job), notes


# ONNX ops the ONNX -> PyTorch conversion may resolve at conversion time (`onnx_torch._specialize`:
# an If to its branch, a Resize to a static interpolate call) or leave as views of their input: a
# float layer of the plan among them may have no module path of its own in the PyTorch graph. None
# of them is an op litert-torch's quantizer annotates (a view is rounded where an int8 op reads it;
# an interpolate computes on dequantized values), so they are float in the .tflite as the plan says.
SPECIALIZED_AWAY = {"If", "Pad", "Shape", "Size", "Identity", "Constant", "ConstantOfShape", "Equal", "Not",
                    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Resize", "Upsample"}
def _static(job: ExportJob, float_model: bytes, options: AndroidOptions) -> tuple[bytes, list[str]]:
    """Static schemes: int8 with integer I/O through PT2E (the plan's numbers in the observers);
    float I/O, int16 activations, and int8 with some layers at int16 (per-layer overrides, the
    fallback's moves) through ai-edge-quantizer's static recipes: litert-torch's converter drops
    the int8 <-> int16 conversions of a mixed PT2E graph (a CONV_2D with an int8 input and an
    int16 output, which LiteRT refuses to load), ai-edge-quantizer writes them as QUANTIZE ops."""
    if job.recipe.scheme.activation_bits == 8 and options.io == "int" and not job.plan.precisions:
        return int8_tflite(job)
    return _aeq_static(job, float_model, options.io == "float")


def mixed_int8_tflite(job: ExportJob) -> tuple[bytes, list[str]]:
    """The int8 .tflite of a plan with int16 layers (per-layer overrides, the fallback's moves),
    integer input and output: ai-edge-quantizer's static recipe, as android writes it."""
    return _aeq_static(torch_job(job), float_tflite(job), float_io=False)


def int8_tflite(job: ExportJob) -> tuple[bytes, list[str]]:
    """The int8 .tflite of the recipe's plan with integer input and output (PT2E), and notes on
    where its numbers came from. The C library is generated from the same file."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeport.quantizers import planned_weights_by_rule

    job = torch_job(job)  # the C library's int8 file comes here directly
    model = job.model
    float_modules = {model.layers.get(node, node): node for node in job.plan.float_nodes}
    # int8 embedding rows (`_with_int8_embeddings`) are scaled in float: PT2E leaves them alone
    row_tables = {path for path, m in model.torch_module.named_modules() if type(m).__name__ == "Int8RowEmbedding"}
    seen: set[str] = set()  # module paths of the graph PT2E annotated
    kept_float: set[str] = set()
    gru_float: list[str] = []

    class Quantizer(PT2EQuantizer):
        """litert-torch's quantizer, leaving the plan's float layers unannotated: their ops read the
        dequantized int8 values of the layer before and compute in float. (Its own
        `set_module_name(name, None)` matches module paths with '_' read as '.', so it misses
        'layer_1'; the plan's layers are matched here by the exact module path instead.)"""

        def annotate(self, graph_module):
            try:
                graph_module = super().annotate(graph_module)
            except IndexError:
                if "gru_io_only" not in self.STATIC_OPS:
                    raise
                # litert-torch's GRU annotator reads an initial state (`gru(x, h0)`) that a call
                # `gru(x)` does not pass: annotate again without it, the GRU then computes in float
                self.STATIC_OPS = [op for op in self.STATIC_OPS if op != "gru_io_only"]
                gru_float.append("GRU kept in float (litert-torch annotates GRUs called with an initial state only)")
                graph_module = super().annotate(graph_module)
            annotate_by_target(graph_module, self.global_config)
            for node in graph_module.graph.nodes:  # then the plan's float layers lose their annotations
                path = _module_path(node)
                owner = enclosing_layer(path, float_modules)  # a float layer's submodules are float too
                seen.add(path)
                seen.add(owner or path)
                if owner is not None and node.meta.pop("quantization_annotation", None) is not None:
                    kept_float.add(owner)
                elif path in row_tables:
                    node.meta.pop("quantization_annotation", None)
            _unshare_fixed_outputs(graph_module, self.global_config)
            return graph_module

    quantizer = Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=job.recipe.per_channel))

    program = torch.export.export(model.torch_module, model.example_inputs)
    explicit_channel_broadcasts(program)
    silu_as_sigmoid_mul(program)
    folded = _float_batch_norms_to_convs(program.graph_module, float_modules)
    prepared = prepare_pt2e(program.module(), quantizer)
    # a float layer absent from the annotated graph was folded away (a BatchNorm into its conv:
    # then the conv is float, `folded`); one present but never annotated is float already
    missing = sorted(node for path, node in float_modules.items() if path not in seen and path not in folded)
    ops = {n.name: n.op_type for n in model.onnx_model().graph.node} if missing else {}
    absent = [node for node in missing if ops.get(node) in SPECIALIZED_AWAY]
    missing = [node for node in missing if node not in absent]
    if missing:
        raise InputError(f"{len(missing)} float layer(s) of the plan not found in the PyTorch graph, so not "
                         f"kept float in the int8 .tflite: {', '.join(missing[:5])}")
    _drop_integer_observers(prepared)
    data = job.calib.take(job.recipe.calib_samples)
    with torch.no_grad():
        for sample in data.samples(model.inputs):  # the exported program is fixed at batch 1
            prepared(*(torch.from_numpy(np.array(v, order="C")) for v in sample.values()))
    counts = _override_observers(prepared, job.plan, _weights_by_name(prepared, model.params, job.plan),
                                 planned_weights_by_rule(model.onnx_model(), job.plan))
    fixed = _fixed_output_qparams(prepared)
    converted = convert_pt2e(prepared, fold_quantize=False)
    notes = [f"kept in float: {', '.join(f'{float_modules[p]} ({p})' for p in sorted(kept_float))}"] if kept_float else []
    if absent:
        notes.append(f"float in the plan, without a module path of their own in the PyTorch graph (the conversion "
                     f"resolved them; litert-torch's quantizer never annotates these ops): {', '.join(absent[:5])}"
                     + (" ..." if len(absent) > 5 else ""))
    notes += gru_float
    if fixed:
        notes.append(f"{fixed} softmax / sigmoid / tanh output(s) at the fixed int8 scale LiteRT's kernels "
                     "require (not the plan's range)")
    notes += [f"int8 weights: {counts['weights']} with the recipe's scales"
             + (f", {counts['weights_rule']} by its rule" if counts["weights_rule"] else ""),
             f"int8 activations: {counts['activations']} observers with the recipe's numbers"
             + (f", {counts['activations_rule']} by its rule (range not in the plan)" if counts["activations_rule"] else ""),
             "int8 input and output (scale and zero point in the model's I/O tensors)"]
    try:
        return _convert(converted, model.example_inputs, QuantConfig(pt2e_quantizer=quantizer)), notes
    except InputError as exc:
        if not kept_float:
            raise
        # litert-torch's layout pass can fail on float ops between int8 ones (seen: an element-wise
        # mul of a dequantized and a float tensor, transposed on one side only)
        raise InputError(f"the int8 .tflite with {len(kept_float)} layer(s) kept in float (fallback / keep_float) "
                         f"did not convert: {exc}") from None


def _aeq_static(job: ExportJob, float_model: bytes, float_io: bool) -> tuple[bytes, list[str]]:
    """ai-edge-quantizer's static recipe (int8 or int16 activations) on the float model, its
    calibration ranges replaced by the recipe's (found by the raw range each tensor showed in the
    ONNX graph). With `float_io` the model keeps float inputs / outputs (QUANTIZE / DEQUANTIZE
    ops at the edges)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    int16 = job.recipe.scheme.activation_bits == 16
    config = recipe.static_wi8_ai16() if int16 else recipe.static_wi8_ai8()
    if float_io:
        config += [{"regex": ".*", "operation": op, "algorithm_key": recipe.AlgorithmName.NO_QUANTIZE}
                   for op in (recipe.TFLOperationName.INPUT, recipe.TFLOperationName.OUTPUT)]
    layer_notes = []
    if job.plan.precisions or job.plan.float_nodes:
        entries, layer_notes = _per_layer_config(job, float_model)
        config += entries

    interpreter = Interpreter(model_content=float_model)
    signatures = interpreter.get_signature_list()
    key = next(iter(signatures))
    # the signature's inputs in the model's order, with the dtypes the file takes (litert-torch
    # writes an int64 input, e.g. a sample rate, as int32)
    wanted = interpreter.get_signature_runner(key).get_input_details()
    names = signatures[key]["inputs"]
    data = job.calib.take(job.recipe.calib_samples)
    samples = [{n: np.asarray(v).astype(wanted[n]["dtype"]) for n, v in zip(names, sample.values())}
               for sample in data.samples(job.model.inputs)]
    qt = quantizer.Quantizer(float_model)
    qt.load_quantization_recipe(config)
    ranges = qt.calibrate({key: samples})  # gives the tensors it quantizes; its ranges are averaged
    observed = _observed_ranges(float_model, key, samples, set(ranges))
    matched = 0
    for name, stats in ranges.items():
        lo, hi = observed[name]
        planned = job.plan.activation_matching(lo, hi, by="observed")
        if planned is not None:
            lo, hi = planned.range
            matched += 1
        shape = np.shape(stats["min"])
        stats["min"], stats["max"] = np.full(shape, lo, np.float32), np.full(shape, hi, np.float32)
    bits = 16 if int16 else 8
    notes = [f"int{bits} activations (ai-edge-quantizer): {matched} of {len(ranges)} tensors with the recipe's "
             "ranges" + (", the rest with their min / max on the same data" if matched < len(ranges) else ""),
             "float input and output (QUANTIZE / DEQUANTIZE inside the model)" if float_io
             else f"int{bits} input and output" + (" (or the precision an override gives the first / last layer)"
                                                   if job.plan.precisions else "")]
    return bytes(qt.quantize(ranges).quantized_model), notes + layer_notes


def _per_layer_config(job: ExportJob, float_model: bytes) -> tuple[list[dict], list[str]]:
    """ai-edge-quantizer recipe rows for the plan's int16 and float layers, one per TFLite op: an
    op belongs to a plan layer when a module path in its output tensor's name is that layer's
    (litert-torch names a fused conv + ReLU after both modules); an op writing a model output
    takes the layer of the ONNX node writing that output. A module holding several ONNX nodes
    takes the widest precision any of them was given (float, then int16, then int8)."""
    import re

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import recipe

    model = job.model
    onnx_model = model.onnx_model()
    wanted: dict[str, str] = {}  # layer path -> "int16" / "float"
    for node, precision in [*job.plan.precisions.items(), *((n, "float") for n in job.plan.float_nodes)]:
        path = model.layers.get(node, node)
        order = ("int8", "int16", "float")
        if order.index(precision) >= order.index(wanted.get(path, "int8")):
            wanted[path] = precision
    producer = {o: model.layers.get(n.name, n.name) for n in onnx_model.graph.node for o in n.output}
    output_layers = [producer.get(o.name, "") for o in onnx_model.graph.output]
    interpreter = Interpreter(model_content=float_model)
    tensors = interpreter.get_tensor_details()
    int16_ops = _int16_ops()
    rows, found, in_float = [], set(), set()
    decided: dict[int, str] = {}  # tensor index -> the precision of the op writing it
    for op in interpreter._get_ops_details():
        if not len(op["outputs"]):
            continue
        name = tensors[op["outputs"][0]]["name"]
        paths = {tensor_module_path(part) for part in name.split(";") if part}
        output = re.fullmatch(r"serving_default_output_(\d+)_output", name) or re.fullmatch(r"serving_default_output_0", name)
        if output is not None:
            index = int(output.group(1)) if output.groups() else 0
            paths.add(output_layers[index] if index < len(output_layers) else "")
        owners = {enclosing_layer(p, wanted) for p in paths} - {None}
        hits = {wanted[p] for p in owners}
        if not owners and op["op_name"] in PASS_THROUGH:
            # an op the conversion made without a module of its own (the slices of an STFT's
            # output): it keeps the precision of what it reads, as the plan's pass-through ops do
            hits = {decided[i] for i in op["inputs"] if i in decided} - {"int8"}
        for index in op["outputs"]:
            decided[index] = "float" if "float" in hits else "int16" if "int16" in hits else "int8"
        if not hits:
            continue
        found.update(owners)
        regex = "^" + re.escape(name) + "(;|$)"
        if "float" not in hits and "int16" in hits and op["op_name"] not in int16_ops:
            hits.add("float")  # no int16 kernel (HARD_SWISH, hard sigmoid's RELU_0_TO_1): float, as int16x8 does
            in_float.add(op["op_name"])
        if "float" in hits:
            rows.append({"regex": regex, "operation": recipe.TFLOperationName.ALL_SUPPORTED,
                         "algorithm_key": recipe.AlgorithmName.NO_QUANTIZE})
        else:
            precision = "int16" if "int16" in hits else "int8"
            static = recipe.static_wi8_ai16 if precision == "int16" else recipe.static_wi8_ai8
            rows += [{**row, "regex": regex} for row in static()]
    notes = []
    for precision, said in (("int16", "at int16 activations (int8 weights)"), ("int8", "at int8 activations"),
                            ("float", "kept in float")):
        layers = sorted(p for p, w in wanted.items() if w == precision and p in found)
        if layers:
            notes.append(f"{said}: {len(layers)} layer(s) ({', '.join(layers[:6])}{' ...' if len(layers) > 6 else ''})")
    if in_float:
        notes.append(f"float where LiteRT has no int16 kernel: {', '.join(sorted(in_float))} ops of int16 layers "
                     "(as the int16x8 recipe does)")
    missing = sorted(p for p in wanted if p not in found)
    if missing:
        notes.append(f"{len(missing)} layer(s) of the plan have no op of their own in the .tflite (fused into "
                     f"another op or resolved by the conversion), int8 there: {', '.join(missing[:5])}"
                     + (" ..." if len(missing) > 5 else ""))
    return rows, notes


# TFLite ops that move values without computing new ones
PASS_THROUGH = {"SLICE", "STRIDED_SLICE", "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "SPLIT",
                "SPLIT_V", "GATHER", "REVERSE_V2", "PAD", "PADV2"}


def _int16_ops() -> set[str]:
    """TFLite ops ai-edge-quantizer quantizes with int16 activations (its policy table); it gives
    any other op of an int16 row the int8 row instead, so those ops are kept float here."""
    import json

    from ai_edge_quantizer import default_policy

    return set(json.loads(default_policy.DEFAULT_JSON_POLICY)["ops_per_config"]["static_wi8_ai16"])


def _observed_ranges(model: bytes, key: str, samples: list[dict], names: set[str]) -> dict[str, tuple[float, float]]:
    """Raw min / max of the named tensors of a float TFLite model over `samples` (by input name
    of signature `key`)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    runner = interpreter.get_signature_runner(key)
    index = {t["name"]: t["index"] for t in interpreter.get_tensor_details() if t["name"] in names}
    lo = {n: np.inf for n in index}
    hi = {n: -np.inf for n in index}
    for sample in samples:
        runner(**sample)
        for name, i in index.items():
            value = interpreter.get_tensor(i)
            lo[name], hi[name] = min(lo[name], float(value.min())), max(hi[name], float(value.max()))
    return {n: (lo[n], hi[n]) for n in index}


class TFLiteExporter(Exporter):
    format = "tflite"
    suffix = ".tflite"
    # the official path is PyTorch -> LiteRT (no ONNX -> TF chains); an .onnx source is converted to
    # a module first (edgeport.onnx_torch says why that way)
    needs_torch_source = True
    options_type = AndroidOptions
    # scheme config -> (job, float .tflite, options) -> (model, notes)
    mixed_precision = True  # per-layer int16 through ai-edge-quantizer (`_static`)
    schemes = {Float32: _fp32, Fp16: _fp16, DynamicInt8: _dynamic_int8, WeightOnlyInt8: _weight_only_int8,
               WeightOnlyInt4: _weight_only_int4, Int8Static: _static, Int16x8: _static}

    def _export(self, job: ExportJob, target: Target, path: Path) -> Artifact:
        options = self.options(job.options, target)
        with quiet():
            job = torch_job(job)
            float_model = _float(job)  # converted once: the artifact's starting point and the baseline
            quantized, embedding_notes = _with_int8_embeddings(job)
            data, notes = self.handler(job.recipe)(quantized, float_model if quantized is job else _float(quantized),
                                                   options)
            notes += embedding_notes
            baseline = path.parent.parent / f".baseline-{target.name}" / path.name
            baseline.parent.mkdir(parents=True, exist_ok=True)
            # the float baseline (α, δ) is the model as given, also when structured pruning shrank it;
            # both files name tensors by module path (the layers check pairs them by name)
            baseline.write_bytes(shorten_names(_convert(job.original.torch_module, job.original.example_inputs)
                                               if job.original is not None else float_model))
            data = shorten_names(data)
        path.write_bytes(data)
        if job.recipe.prune or job.recipe.palettize:
            notes.append("pruned / palettized weights are stored dense in TFLite (same values, "
                         f"{min(job.recipe.scheme.weight_bits, 32)} bits each)")
        return Artifact(target.name, self.format, path, job.recipe.describe(), notes=notes, baseline=baseline)

    def describe(self, path: Path) -> dict:
        from collections import Counter

        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
        weight_bytes: Counter = Counter()
        for tensor in interpreter.get_tensor_details():
            try:
                value = interpreter.get_tensor(tensor["index"])
            except ValueError:
                continue  # activations have no data before invoke
            if value.size >= 16:
                weight_bytes[np.dtype(tensor["dtype"]).name] += value.nbytes
        return {"ops": dict(ops), "weight_bytes": dict(weight_bytes)}

    def read_params(self, path: Path, plan: QuantPlan) -> dict:
        """Every quantized tensor's scale / zero point in the file vs the plan's parameter sets.

        By value, not through the parameter map: the converter names weight tensors after module
        scopes or torch.export's wrapper (`...Wrapper;1`), not parameter paths, and the file is all
        there is to read (the plan is keyed by ONNX names)."""
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        weight_sets = {tuple(w.scale_array().tolist()) for w in plan.weights.values()}
        activation_sets = {(float(np.float32(a.scale)), int(a.zero_point))
                           for a in [*plan.activations.values(), *plan.mixed_activations.values()]}
        activation_sets |= {(float(qmath.activation_qparams_int16(*a.range)[0]), 0)  # TFLite's int16 is
                            for a in plan.mixed_activations.values()}  # symmetric (see _mixed_activations)
        checked, differ = 0, []
        for tensor in interpreter.get_tensor_details():
            q = tensor["quantization_parameters"]
            if np.dtype(tensor["dtype"]) not in (np.int8, np.int16) or not len(q["scales"]):
                continue
            checked += 1
            scales = np.float32(q["scales"])
            if len(scales) > 1 or tensor["name"] and tuple(scales.tolist()) in weight_sets:
                ok = tuple(scales.tolist()) in weight_sets
            else:
                ok = (float(scales[0]), int(q["zero_points"][0])) in activation_sets
            if not ok:
                differ.append(tensor["name"])
        return {"tensors_checked": checked, "exact": checked - len(differ), "differ": differ,
                "storage": "int8 tensors matched to the plan's parameter sets by value"}
