"""ONNX exporter (fp32, fp16, dynamic int8, weight-only int8, static int8 / int16x8 QDQ) and the
ORT-format variant.

Quantized graphs are written by onnxruntime's own quantization tool, fed with edgeport's
`QuantPlan` as tensor overrides, so every scale and zero point in the QDQ graph is the recipe's.
`honored_params()` reads them back from the artifact to prove it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgeport.exporters import Artifact, Exporter, ExportJob, Refuse
from edgeport.errors import InputError
from edgeport.exporters.onnx_qdq import round_both_sides
from edgeport.exporters.reproducible import canonical_ort, source_label
from edgeport.model import FloatModel
from edgeport.quantizers.plan import QuantPlan, embedding_note
from edgeport.quiet import quiet_python
from edgeport.recipe import Recipe
from edgeport.schemes import DynamicInt8, Float32, Fp16, Int8Static, Int16x8, WeightOnlyInt4, WeightOnlyInt8
from edgeport.targets import Target


def _weight_overrides(plan: QuantPlan) -> dict:
    overrides = {}
    for name, w in plan.weights.items():
        entries = [{"scale": np.array(s, dtype=np.float32), "zero_point": np.array(z, dtype=np.int8)}
                   for s, z in zip(w.scale, w.zero_point)]
        if w.axis is not None:
            for entry in entries:
                entry["axis"] = w.axis
        overrides[name] = entries
    return overrides


def _activation_overrides(plan: QuantPlan, dtype=np.int8) -> dict:
    return {name: [{"scale": np.array(a.scale, dtype=np.float32), "zero_point": np.array(a.zero_point, dtype=dtype)}]
            for name, a in plan.activations.items()}


class _OneSampleReader:
    """onnxruntime's quantizer insists on a calibration reader; every range it needs is overridden
    by the plan, so one zero sample per input is enough and its statistics are never used."""

    def __init__(self, model: FloatModel):
        self._feeds = iter([{s.name: np.zeros(s.concrete_shape(1), dtype=s.dtype) for s in model.inputs}])

    def get_next(self):
        return next(self._feeds, None)


def _mixed_overrides(plan: QuantPlan, src: str, default: dict, int16: bool) -> dict:
    """Activation overrides of a mixed-precision plan: each tensor keeps its producer's type and
    parameters, with a `convert` (Q -> DQ into the other type, the plan's numbers) for the
    consumers whose node runs in the other precision. onnxruntime's QDQ quantizer writes these
    conversions from its `convert` overrides; which tensors need one follows from the plan."""
    import onnx
    from onnxruntime.quantization import QuantType

    graph = onnx.load(src).graph
    types = {"int8": (QuantType.QInt8, np.int8), "int16": (QuantType.QInt16, np.int16)}
    own = "int16" if int16 else "int8"
    producer = {o: n.name for n in graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)

    def entry(name: str, precision: str) -> dict:
        params = plan.mixed_activations[name] if precision != own else plan.activations[name]
        quant_type, dtype = types[precision]
        return {"quant_type": quant_type, "scale": np.array(params.scale, dtype=np.float32),
                "zero_point": np.array(params.zero_point, dtype=dtype)}

    overrides = dict(default)
    for name in plan.mixed_activations:
        made_in = plan.precisions.get(producer.get(name), own)
        other = [c for c in consumers.get(name, []) if plan.precisions.get(c, own) != made_in
                 and c not in plan.float_nodes]
        value = entry(name, made_in)
        if other:
            wanted = {plan.precisions.get(c, own) for c in other}
            value["convert"] = {**entry(name, wanted.pop()), "recv_nodes": set(other)}
        overrides[name] = [value]
    return overrides


def _static(model: FloatModel, recipe: Recipe, plan: QuantPlan, src: str, dst: str) -> None:
    """int8 or int16x8 QDQ (int16 QDQ needs opset 21, which onnxruntime's quantizer sets), with
    per-layer int8 / int16 overrides as conversions between the two."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    int16 = recipe.scheme.activation_bits == 16
    activations = _activation_overrides(plan, np.int16 if int16 else np.int8)
    if plan.precisions:
        activations = _mixed_overrides(plan, src, activations, int16)
    with quiet_python():
        quantize_static(src, dst, _OneSampleReader(model), quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
                        activation_type=QuantType.QInt16 if int16 else QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=plan.quantized_ops, nodes_to_exclude=plan.float_nodes,
                        extra_options={"TensorQuantOverrides": {**activations, **_weight_overrides(plan)},
                                       "ActivationSymmetric": int16, "WeightSymmetric": True})
    if plan.precisions or plan.float_nodes:
        import onnx

        quantized = onnx.load(dst)
        if round_both_sides(quantized.graph):
            onnx.save(quantized, dst)


def _int8_dynamic(model: FloatModel, recipe: Recipe, plan: QuantPlan, src: str, dst: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_python():
        quantize_dynamic(src, dst, per_channel=recipe.per_channel, weight_type=QuantType.QInt8,
                         op_types_to_quantize=plan.quantized_ops, nodes_to_exclude=plan.float_nodes,
                         extra_options={"TensorQuantOverrides": _weight_overrides(plan), "WeightSymmetric": True})


def _fp16(model: FloatModel, recipe: Recipe, plan: QuantPlan, src: str, dst: str) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    graph = onnx.load(src)
    blocked = list(plan.float_nodes) + [n for n in _out_of_fp16_range(graph) if n not in plan.float_nodes]
    with quiet_python():
        half = convert_float_to_float16(graph, keep_io_types=True, node_block_list=blocked or None,
                                        max_finite_val=FP16_LIMIT)
    onnx.save(half, dst)


FP16_LIMIT = 65504.0  # the largest finite float16 (the converter's default clamp, 1e4, is lower)


def _out_of_fp16_range(graph) -> list[str]:
    """Nodes that must stay float32 for fp16 to keep the model's numbers: a Constant (or the
    reader of an initializer) holding values beyond float16's range, and every node reading it.
    Seen: PP-OCRv4 det's BatchNorm variances of 1e7, clamped, made its output cosine 0.74."""
    from onnx import numpy_helper

    def too_large(tensor) -> bool:
        values = numpy_helper.to_array(tensor)
        return values.dtype == np.float32 and values.size > 0 and float(np.abs(values).max()) > FP16_LIMIT

    large = {i.name for i in graph.graph.initializer if too_large(i)}
    blocked = []
    for node in graph.graph.node:
        if node.op_type == "Constant" and any(a.name == "value" and too_large(a.t) for a in node.attribute):
            large.update(node.output)
            blocked.append(node.name)
    blocked += [node.name for node in graph.graph.node if node.op_type != "Constant" and large & set(node.input)]
    return [name for name in blocked if name]


def _fp32(model: FloatModel, recipe: Recipe, plan: QuantPlan, src: str, dst: str) -> None:
    Path(dst).write_bytes(Path(src).read_bytes())


def _weight_only(model: FloatModel, recipe: Recipe, plan: QuantPlan, src: str, dst: str) -> None:
    """int8 weights behind a DequantizeLinear (the plan's scales, per channel on the plan's axis);
    activations and compute stay float. Written here: onnxruntime's quantizers always quantize
    activations too (static) or run integer MatMuls (dynamic), neither of which is this scheme."""
    import onnx
    from onnx import helper, numpy_helper

    from edgeport.quantizers import qmath

    graph = onnx.load(src)
    inits = {i.name: i for i in graph.graph.initializer}
    dequantize = []
    for name, w in plan.weights.items():
        values = numpy_helper.to_array(inits[name])
        scale = w.scale_array()
        q = qmath.quantize(values, scale, np.zeros(len(scale), dtype=np.int32), axis=w.axis).astype(np.int8)
        graph.graph.initializer.remove(inits[name])
        graph.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_quantized"),
                                        numpy_helper.from_array(scale if w.axis is not None else scale[:1].reshape(()),
                                                                f"{name}_scale"),
                                        numpy_helper.from_array(np.zeros(len(scale) if w.axis is not None else (),
                                                                         dtype=np.int8), f"{name}_zero_point")])
        attrs = {"axis": w.axis} if w.axis is not None else {}
        dequantize.append(helper.make_node("DequantizeLinear", [f"{name}_quantized", f"{name}_scale",
                                                                f"{name}_zero_point"], [name],
                                           name=f"{name}_DequantizeLinear", **attrs))
    for node in reversed(dequantize):  # before every consumer: graph order stays topological
        graph.graph.node.insert(0, node)
    onnx.save(graph, dst)


def _weight_only_int4(model: FloatModel, recipe: Recipe, plan: QuantPlan, src: str, dst: str) -> None:
    """int4 weights behind a DequantizeLinear (opset 21): blocked along a linear layer's input
    axis, per output channel for convolutions; activations and compute stay float. onnxruntime
    fuses a blocked DequantizeLinear -> MatMul into MatMulNBits (int8 activations at run time, its
    default accuracy level 4); other layers dequantize their weights on every call. Written here:
    onnxruntime's MatMulNBits quantizer covers MatMul only and writes a contrib op."""
    import ml_dtypes
    import onnx
    from onnx import helper, numpy_helper

    from edgeport.quantizers import qmath

    graph = onnx.load(src)
    inits = {i.name: i for i in graph.graph.initializer}
    dequantize = []
    for name, w in plan.weights.items():
        values = numpy_helper.to_array(inits[name])
        shape = list(values.shape)
        if w.block is not None:
            shape[w.axis] = -(-shape[w.axis] // w.block)
        scale = w.scale_array().reshape(shape if w.block is not None else [-1])
        if w.bits == 4:
            q = qmath.quantize_int4(values, scale, w.axis, w.block).astype(ml_dtypes.int4)
        else:  # depthwise kernels stay int8
            q = qmath.quantize(values, scale, np.zeros(len(scale), dtype=np.int32), axis=w.axis).astype(np.int8)
        graph.graph.initializer.remove(inits[name])
        graph.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_quantized"),
                                        numpy_helper.from_array(scale, f"{name}_scale")])
        attrs = {"axis": w.axis, **({"block_size": w.block} if w.block is not None else {})}
        dequantize.append(helper.make_node("DequantizeLinear", [f"{name}_quantized", f"{name}_scale"], [name],
                                           name=f"{name}_DequantizeLinear", **attrs))
    for node in reversed(dequantize):  # before every consumer: graph order stays topological
        graph.graph.node.insert(0, node)
    graph.ir_version = max(graph.ir_version, INT4_IR_VERSION)
    onnx.save(graph, dst)


def row_quantized_embeddings(graph, plan: QuantPlan) -> list[str]:
    """Store each planned embedding table as int8 rows and a float scale per row, looked up
    together: Gather(int8 table) -> Cast -> Mul(Gather(row scales)), the Mul keeping the Gather's
    name and output. Only the looked-up rows are converted, so the lookup costs what it did in
    float (a DequantizeLinear on the table would convert all of it on every call); standard ops
    that every ONNX runtime has. Returns the names of the nodes written (quantizers leave them
    alone, as they do other lookups in float constants). Written here: onnxruntime's quantizers
    give a Gather one scale per table."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeport.quantizers import qmath

    inits = {i.name: i for i in graph.graph.initializer}
    written, stored, nodes = [], set(), []
    for node in graph.graph.node:
        name = node.input[0] if node.op_type == "Gather" and node.input else None
        if name not in plan.embeddings or name not in inits:
            nodes.append(node)
            if name in inits and inits[name].data_type == TensorProto.FLOAT:
                # another lookup in a float constant (ids known ahead, a small table): it stays
                # float, its output quantized by its consumers with the plan's numbers
                # (onnxruntime would give the output the table's scale, not the plan's)
                written.append(node.name)
            continue
        params = plan.embeddings[name]
        if name not in stored:
            stored.add(name)
            graph.graph.initializer.extend(_stored_rows(numpy_helper.to_array(inits[name]), name, params))
        ids, out, base = node.input[1], node.output[0], node.name or out
        if params.bits == 4:
            part = [_int4_lookup(graph, name, inits[name].dims[1], ids, out, base)]
        else:
            part = [helper.make_node("Gather", [f"{name}_quantized", ids], [f"{out}_rows"], name=f"{base}_rows"),
                    helper.make_node("Cast", [f"{out}_rows"], [f"{out}_int"], name=f"{base}_cast",
                                     to=TensorProto.FLOAT),
                    helper.make_node("Gather", [f"{name}_row_scale", ids], [f"{out}_row_scale"], name=f"{base}_scales"),
                    helper.make_node("Mul", [f"{out}_int", f"{out}_row_scale"], [out], name=base)]
        nodes += part
        written += [n.name for n in part]
    still_read = {i for n in nodes for i in n.input}
    for name in stored:
        if name not in still_read:
            graph.graph.initializer.remove(inits[name])
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return written


def _stored_rows(table: np.ndarray, name: str, params) -> list:
    """The initializers of a quantized table: `<name>_quantized` (int8, or int4 for an int4
    plan) and `<name>_row_scale`, one scale per row; an int4 table repeats each row's scale once
    per block of `_int4_row_block` values, the layout GatherBlockQuantized reads."""
    import ml_dtypes
    from onnx import numpy_helper

    from edgeport.quantizers import qmath

    scales = params.scale_array()
    if params.bits == 4:
        q = qmath.quantize_int4(table, scales, 0, None).astype(ml_dtypes.int4)
        per_row = np.repeat(scales.reshape(-1, 1), table.shape[1] // _int4_row_block(table.shape[1]), axis=1)
        return [numpy_helper.from_array(q, f"{name}_quantized"), numpy_helper.from_array(per_row, f"{name}_row_scale")]
    return [numpy_helper.from_array(qmath.quantize_rows(table, scales), f"{name}_quantized"),
            numpy_helper.from_array(scales.reshape(-1, 1), f"{name}_row_scale")]


def _int4_row_block(width: int) -> int:
    """The largest power of two (at most 4096) dividing a row of `width` values: GatherBlockQuantized
    takes blocks of a power of two, at least 16 (the plan keeps narrower tables int8)."""
    return min(width & -width, 4096)


def _int4_lookup(graph, name: str, width: int, ids: str, out: str, base: str):
    """An int4 table's lookup: onnxruntime's GatherBlockQuantized (com.microsoft; CPU and web)
    reads only the rows looked up and scales them, where a DequantizeLinear on the table would
    convert all of it on every call (6.4 ms against 0.1 ms for a 30522 x 128 vocabulary here).
    The table is int4, so its zero point is 0 (symmetric rows)."""
    from onnx import helper

    if not any(o.domain == "com.microsoft" for o in graph.opset_import):
        graph.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return helper.make_node("GatherBlockQuantized", [f"{name}_quantized", ids, f"{name}_row_scale"], [out],
                            name=base, domain="com.microsoft", gather_axis=0, quantize_axis=1,
                            block_size=_int4_row_block(width))


def _with_embeddings(src: str, plan: QuantPlan) -> QuantPlan:
    """Rewrite `src` with int8 embedding rows; the plan the scheme's handler then applies, with
    the lookup's nodes left as written."""
    import dataclasses

    import onnx

    graph = onnx.load(src)
    written = row_quantized_embeddings(graph, plan)
    if not written:
        return plan
    onnx.save(graph, src)
    return dataclasses.replace(plan, float_nodes=list(plan.float_nodes) + written)


# recipe scheme config -> transformation of the float ONNX file into the artifact, and the note
# the report shows for it
_SCHEMES = {
    Float32: (_fp32, None),
    Fp16: (_fp16, "fp16 weights and compute; inputs and outputs stay float32"),
    DynamicInt8: (_int8_dynamic, "dynamic int8 quantizes MatMul/Gemm weights; other layers stay fp32"),
    WeightOnlyInt8: (_weight_only, "weight-only int8: Conv/Gemm/MatMul weights stored int8 behind DequantizeLinear; "
                                   "activations and compute stay fp32"),
    WeightOnlyInt4: (_weight_only_int4, "weight-only int4: Conv/Gemm/MatMul weights stored int4 behind "
                                        "DequantizeLinear (opset 21); onnxruntime runs a blocked int4 MatMul as "
                                        "MatMulNBits, quantizing its input to int8 at run time"),
    Int8Static: (_static, None),
    Int16x8: (_static, None),
}


def build_onnx(model: FloatModel, recipe: Recipe, plan: QuantPlan) -> bytes:
    """The ONNX model for `recipe`, serialized, tagged with the recipe it was made from."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = str(Path(tmp, "float.onnx")), str(Path(tmp, "out.onnx"))
        opset = INT4_OPSET if recipe.scheme.weight_bits == 4 else PER_AXIS_OPSET if recipe.scheme.int8_weights else None
        Path(src).write_bytes(_with_opset(model.onnx_bytes, opset) if opset else model.onnx_bytes)
        _SCHEMES[type(recipe.scheme)][0](model, recipe, _with_embeddings(src, plan), src, dst)
        result = onnx.load(dst)
    result.producer_name = "edgeport"
    onnx.helper.set_model_props(result, {"edgeport.recipe": recipe.describe(),
                                         "edgeport.source": source_label(model.source)})
    return result.SerializeToString()


PER_AXIS_OPSET = 13  # DequantizeLinear's `axis` (per-channel weights) exists from opset 13
INT4_OPSET, INT4_IR_VERSION = 21, 10  # int4 tensors and blocked DequantizeLinear


def _with_opset(onnx_bytes: bytes, minimum: int) -> bytes:
    """The graph at opset >= `minimum` (`onnx.version_converter`), so integer weights can be written
    with a scale per channel (13) or int4 in blocks (21): models exported at older opsets
    (paddle2onnx writes 10-12) would otherwise get a DequantizeLinear their opset lacks, which no
    runtime loads."""
    import onnx
    from onnx import version_converter

    graph = onnx.load_from_string(onnx_bytes)
    opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), minimum)
    if opset >= minimum:
        return onnx_bytes
    try:
        return version_converter.convert_version(graph, minimum).SerializeToString()
    except Exception as exc:  # noqa: BLE001 - the converter's own failure, said in one line
        what = "int4 weights" if minimum == INT4_OPSET else "int8 weights"
        raise InputError(f"the model is at ONNX opset {opset}; {what} need opset {minimum} and "
                         f"onnx's version converter could not upgrade it ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


CONVERTED = " (converted)"  # how honored_params names the converted copy of a mixed-precision tensor


def honored_params(onnx_bytes: bytes, plan: QuantPlan) -> dict:
    """Compare the quantization parameters stored in an ONNX artifact with the plan's.

    Returns counts of tensors checked / exact / missing and the names that differ.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantized_outputs = {o for n in model.graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    biases = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 2:
            continue
        scale = inits.get(node.input[1])
        zero = inits.get(node.input[2]) if len(node.input) > 2 else \
            None if scale is None else np.zeros(scale.shape, dtype=np.int8)  # int4 weights: no zero point
        src = node.input[0]
        if scale is None or zero is None or src in quantized_outputs:  # a Q->DQ pair shares its params
            continue
        if src in inits and inits[src].dtype == np.int32:  # bias: scale derived = input scale * weight scale
            biases += 1
            continue
        # onnxruntime renames the tensors it quantizes: weights become `<w>_quantized`, a graph
        # output `<t>` is produced as `<t>_QuantizeLinear_Input` so the final DQ can keep its name,
        # and a mixed-precision conversion quantizes `<t>_DequantizeLinear_Output` again.
        converted = src.endswith("_DequantizeLinear_Output") and \
            src.removesuffix("_DequantizeLinear_Output") in plan.mixed_activations
        if converted:
            src = src.removesuffix("_DequantizeLinear_Output") + CONVERTED
        for suffix in ("_quantized", "_Transposed_quantized", "_QuantizeLinear_Input"):
            base = src[: -len(suffix)]
            if src.endswith(suffix) and (base in plan.weights or base in plan.activations):
                src = base
        found.setdefault(src, (scale, zero))
    for name in plan.weights:  # dynamic quantization stores weight scales without a DQ node
        for key in (f"{name}_scale", f"{name}_Transposed_scale"):
            zkey = key.replace("_scale", "_zero_point")
            if name not in found and key in inits and zkey in inits:
                found[name] = (inits[key], inits[zkey])

    for name in plan.embeddings:  # integer rows and a scale per row (repeated per block), without a DQ node
        if f"{name}_row_scale" in inits and f"{name}_quantized" in inits:
            scales = inits[f"{name}_row_scale"]
            if scales.ndim == 2 and np.all(scales == scales[:, :1]):
                scales = scales[:, 0]
            found[name] = (scales, np.zeros(len(plan.embeddings[name].scale), dtype=np.int8))

    expected = {n: (np.float32([a.scale]), np.int8([a.zero_point])) for n, a in plan.activations.items()}
    producer: dict[str, str] = {}  # float tensor name -> the node computing it (not the DQ that restores a name)
    for node in model.graph.node:
        for out in node.output:
            producer.setdefault(out.removesuffix("_QuantizeLinear_Input"), node.name)
    for name, params in plan.mixed_activations.items():  # the producer's precision, and the converted copy
        mine, other = expected[name], (np.float32([params.scale]), np.int16([params.zero_point]))
        if producer.get(name) in plan.precisions:
            mine, other = other, mine
        expected[name], expected[name + CONVERTED] = mine, other
    expected.update({n: (w.scale_array(), np.asarray(w.zero_point, dtype=np.int8))
                     for n, w in {**plan.weights, **plan.embeddings}.items()})
    checked = [n for n in expected if n in found]
    differ = [n for n in checked
              if not (np.array_equal(np.ravel(found[n][0]).astype(np.float32), np.ravel(expected[n][0]))
                      and np.array_equal(np.ravel(found[n][1]).astype(np.int64), np.ravel(expected[n][1]).astype(np.int64)))]
    unplanned = [n for n in found if n not in expected]
    return {"tensors_checked": len(checked), "exact": len(checked) - len(differ), "differ": differ,
            "unplanned": unplanned, "weights": sum(n in plan.weights for n in checked),
            "activations": sum(n in plan.activations for n in checked), "int32_biases": biases,
            **({"embeddings": sum(n in plan.embeddings for n in checked)} if plan.embeddings else {})}


class OnnxExporter(Exporter):
    format = "onnx"
    suffix = ".onnx"
    schemes = _SCHEMES
    mixed_precision = True

    def _export(self, job: ExportJob, target: Target, path: Path) -> Artifact:
        path.write_bytes(build_onnx(job.model, job.recipe, job.plan))
        return Artifact(target.name, self.format, path, job.recipe.describe(), notes=_notes(job.recipe, job.plan))

    def describe(self, path: Path) -> dict:
        import onnx
        from collections import Counter

        model = onnx.load(str(path))
        weight_bytes: Counter = Counter()
        for init in model.graph.initializer:
            if len(init.dims) >= 1:
                dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
                weight_bytes[str(dtype)] += int(np.prod(init.dims)) * dtype.itemsize
        return {"ops": dict(Counter(n.op_type for n in model.graph.node)), "weight_bytes": dict(weight_bytes)}

    def read_params(self, path: Path, plan: QuantPlan) -> dict:
        return honored_params(path.read_bytes(), plan)


class OrtExporter(Exporter):
    """ORT format for ONNX Runtime Mobile: the same ONNX graph, saved by onnxruntime itself after
    its extended graph optimizations. Those are platform-independent (QDQ groups become QLinear*
    contrib ops that ORT Mobile has) and make the int8 model as fast as the .onnx; the `all`
    level would add x86-only layouts."""

    format = "ort"
    suffix = ".ort"
    schemes = {**_SCHEMES, WeightOnlyInt4: Refuse("the ORT format of onnxruntime 1.32 cannot hold int4 tensors "
                                                  "(the session refuses the file); the onnx target takes int4")}
    mixed_precision = True

    def _export(self, job: ExportJob, target: Target, path: Path) -> Artifact:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp, "model.onnx")
            src.write_bytes(build_onnx(job.model, job.recipe, job.plan))
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.optimized_model_filepath = str(path)
            options.add_session_config_entry("session.save_model_format", "ORT")
            options.log_severity_level = 3
            ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        path.write_bytes(canonical_ort(path.read_bytes()))  # onnxruntime's table order changes per run
        return Artifact(target.name, self.format, path, job.recipe.describe(), notes=_notes(job.recipe, job.plan))


def _notes(recipe: Recipe, plan: QuantPlan) -> list[str]:
    notes = []
    if plan.float_nodes:
        notes.append(f"kept in float: {', '.join(plan.float_nodes)}")
    if plan.embeddings:
        notes.append(embedding_note(plan))
    scheme_note = _SCHEMES[type(recipe.scheme)][1]
    if scheme_note:
        notes.append(scheme_note)
    if plan.compression:
        notes.append(f"pruning / palettes applied to {len(plan.compression)} weights, stored dense "
                     "(ONNX has no compressed weight storage; size is unchanged)")
    return notes
