"""ONNX float graph -> TensorFlow op graph in the layout TF.js kernels want (NHWC).

Written here rather than taken from the `tensorflowjs` converter: that package pins TensorFlow
and jax versions that conflict with the rest of the toolchain (see DESIGN.md), and going
through TensorFlow would also lose the ONNX tensor names the quantization plan is keyed by.

Layout: the graph keeps the source model's NCHW contract at its input and output. Rank-4
tensors are carried in NHWC between convolutions; `_Converter.tensor(name, layout)` inserts a
Transpose only where an op needs the other layout (before a Flatten/Reshape of a spatial map,
for example), so a CNN gets one Transpose at the input and at most one before its classifier.

One handler per ONNX op type, registered in `TFJS_OPS` where it is defined; an op without a
handler is an UnsupportedOpError naming the op and the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np

from edgeport.errors import UnsupportedOpError
from edgeport.quantizers import qmath
from edgeport.quantizers.plan import WeightParams
from edgeport.registry import Registry

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
AXIS_NCHW_TO_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
WHERE = "TF.js graph models: edgeport has no conversion for this op"


@dataclass
class TfWeight:
    """A Const node's value. `values` are float32 (or int32); `stored` says how the shard keeps
    them: "float32", "float16", "int32", or "int8" (integers q in [-128, 127], written in TF.js's
    uint8 affine format as q + 128 with `scale` / `min`)."""

    name: str
    values: np.ndarray
    stored: str = "float32"
    scale: float = 1.0
    min: float = -128.0


@dataclass
class TfGraph:
    nodes: list[dict] = field(default_factory=list)
    weights: list[TfWeight] = field(default_factory=list)
    inputs: list[tuple[str, list[int]]] = field(default_factory=list)
    outputs: list[tuple[str, list[int]]] = field(default_factory=list)
    # ONNX initializer name -> {"const": TF const name, "scale_const": name or None, "axis": int or None}
    planned: dict[str, dict] = field(default_factory=dict)


# ------------------------------------------------------------------ attr encoding (TF AttrValue JSON)

def a_ints(values) -> dict:
    return {"list": {"i": [str(int(v)) for v in values]}}


def a_str(text: str) -> dict:
    import base64

    return {"s": base64.b64encode(text.encode()).decode()}


def a_strs(texts) -> dict:
    return {"list": {"s": [a_str(t)["s"] for t in texts]}}


def a_type(dtype: str = "DT_FLOAT") -> dict:
    return {"type": dtype}


def a_shape(dims) -> dict:
    return {"shape": {"dim": [{"size": str(int(d))} for d in dims]}}


# ------------------------------------------------------------------ converter

class _Converter:
    def __init__(self, onnx_model, plan_weights: dict[str, WeightParams], int8_weights: bool):
        import onnx
        from onnx import numpy_helper, shape_inference

        self.model = shape_inference.infer_shapes(onnx_model)
        g = self.model.graph
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for node in g.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.shapes: dict[str, list] = {}
        for info in list(g.value_info) + list(g.input) + list(g.output):
            dims = info.type.tensor_type.shape.dim
            self.shapes[info.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
        self.plan_weights = plan_weights if int8_weights else {}
        self.graph = TfGraph()
        self.held: dict[str, tuple[str, str]] = {}  # onnx tensor -> (tf node, layout "nhwc" | "plain")
        self.views: dict[tuple[str, str], str] = {}
        self.names: set[str] = set()
        self.onnx = onnx

    # --- emitting
    def unique(self, base: str) -> str:
        name, i = base.replace(":", "_"), 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def op(self, op: str, name: str, inputs: list[str], **attrs) -> str:
        name = self.unique(name)
        self.graph.nodes.append({"name": name, "op": op, "input": list(inputs), "attr": {"T": a_type(), **attrs}})
        return name

    def const(self, name: str, values: np.ndarray, stored: str | None = None, **kw) -> str:
        values = np.ascontiguousarray(values)
        if stored is None:
            stored = "int32" if values.dtype.kind in "iu" else "float32"
        values = values.astype(np.int32 if stored == "int32" else np.float32)
        name = self.unique(name)
        dtype = "DT_INT32" if stored == "int32" else "DT_FLOAT"
        self.graph.nodes.append({"name": name, "op": "Const", "attr": {
            "value": {"tensor": {"dtype": dtype, "tensorShape": {"dim": [{"size": str(d)} for d in values.shape]}}},
            "dtype": a_type(dtype)}})
        self.graph.weights.append(TfWeight(name, values, stored, **kw))
        return name

    # --- tensors and layouts
    def rank(self, name: str) -> int:
        if name in self.consts:
            return self.consts[name].ndim
        return len(self.shapes.get(name, []))

    def hold(self, onnx_name: str, tf_name: str, layout: str) -> None:
        self.held[onnx_name] = (tf_name, layout)

    def layout(self, onnx_name: str) -> str:
        return self.held[onnx_name][1]

    def tensor(self, onnx_name: str, layout: str | None = None) -> str:
        """TF node holding `onnx_name`, transposed to `layout` if asked (cached)."""
        tf_name, have = self.held[onnx_name]
        if layout is None or layout == have or self.rank(onnx_name) != 4:
            return tf_name
        key = (onnx_name, layout)
        if key not in self.views:
            perm = NCHW_TO_NHWC if layout == "nhwc" else NHWC_TO_NCHW
            self.views[key] = self.op("Transpose", f"{tf_name}/to_{layout}",
                                      [tf_name, self.const(f"{tf_name}/perm_{layout}", np.array(perm))],
                                      Tperm=a_type("DT_INT32"))
        return self.views[key]

    def constant(self, name: str, node) -> np.ndarray:
        if name not in self.consts:
            raise UnsupportedOpError(node.op_type, node.name, f"TF.js export needs input '{name}' to be a constant")
        return self.consts[name]

    def attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    # --- weights of the recipe
    def weight(self, onnx_name: str, to_tf: Callable[[np.ndarray], np.ndarray], onnx_axis: int, name: str,
               node) -> tuple[str, np.ndarray | None]:
        """Const for a conv / matmul weight (`to_tf` maps the ONNX layout to TF's): float, or the
        plan's int8 integers.

        Returns the const name and, for per-channel int8, the scales the layer's output must be
        multiplied by (TF.js's quantized format has one scale per tensor)."""
        w = self.consts[onnx_name]
        params = self.plan_weights.get(onnx_name)
        if params is None:
            return self.const(name, to_tf(w)), None
        scales = params.scale_array()
        if params.axis is not None and params.axis != onnx_axis:
            raise UnsupportedOpError(node.op_type, node.name, f"weight planned along axis {params.axis}, "
                                     f"TF.js export needs the output-channel axis {onnx_axis}")
        per_tensor = params.axis is None
        q = to_tf(qmath.quantize(w, scales[0] if per_tensor else scales, 0, params.axis)).astype(np.float32)
        s = float(scales[0]) if per_tensor else 1.0
        const = self.const(name, q, "int8", scale=s, min=-128.0 * s)
        self.graph.planned[onnx_name] = {"const": const, "axis": params.axis, "scale_const": None}
        return const, None if per_tensor else scales


# ------------------------------------------------------------------ handlers

Handler = Callable[[_Converter, object], None]
TFJS_OPS: Registry[Handler] = Registry("ONNX op (TF.js conversion)")


def _spatial_padding(c: _Converter, node, x: str, pads, kernel, strides, dilations, pad_value=0.0):
    """TF padding string for ONNX pads, adding an explicit Pad op where TF's SAME rule differs."""
    if not any(pads):
        return x, "VALID"
    in_hw = c.shapes.get(node.input[0], [])[2:4]
    if len(in_hw) == 2 and all(d > 0 for d in in_hw):
        same = []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            same += [total // 2, total - total // 2]
        if [pads[0], pads[2], pads[1], pads[3]] == same:
            return x, "SAME"
    paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
    inputs = [x, c.const(f"{node.name}/paddings", paddings)]
    if pad_value:
        inputs.append(c.const(f"{node.name}/pad_value", np.array(pad_value, dtype=np.float32)))
    return c.op("PadV2" if pad_value else "Pad", f"{node.name}/pad", inputs, Tpaddings=a_type("DT_INT32")), "VALID"


def _bias_and_scale(c: _Converter, node, y: str, bias: np.ndarray | None, scales: np.ndarray | None) -> str:
    """Add the bias and, for per-channel int8 weights, multiply by the weight scales.

    With integer weights the layer computes y = (x * Q) * s + b, written (x * Q + b / s) * s: the
    bias then fuses into the conv / matmul kernel, and a ReLU after the Mul may move before it
    (scales are positive), so the whole layer is one fused kernel plus one Mul."""
    if bias is not None:
        b = bias if scales is None else (bias.astype(np.float64) / scales).astype(np.float32)
        y = c.op("BiasAdd", f"{node.name}/bias", [y, c.const(f"{node.name}/bias", b)], data_format=a_str("NHWC"))
    if scales is None:
        return y
    const = c.const(f"{node.name}/weight_scales", scales)
    c.graph.planned[node.input[1]]["scale_const"] = const
    y = c.op("Mul", f"{node.name}/scaled", [y, const])
    c.graph.nodes[-1]["positive_scale"] = True  # marks the Mul for _hoist_relu; removed before writing
    return y


@TFJS_OPS.register("Conv")
def conv(c: _Converter, node) -> None:
    at = c.attrs(node)
    w = c.constant(node.input[1], node)
    if w.ndim != 4:
        raise UnsupportedOpError("Conv", node.name, "TF.js export supports 2-D convolutions only")
    _, in_per_group, kh, kw = w.shape
    group = at.get("group", 1)
    strides = at.get("strides", [1, 1])
    dilations = at.get("dilations", [1, 1])
    pads = at.get("pads", [0, 0, 0, 0])
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOpError("Conv", node.name, "auto_pad is not supported by edgeport's TF.js export")
    x, padding = _spatial_padding(c, node, c.tensor(node.input[0], "nhwc"), pads, (kh, kw), strides, dilations)
    if group == 1:
        op, to_tf = "Conv2D", (lambda a: a.transpose(2, 3, 1, 0))
    elif in_per_group == 1:  # depthwise, channel multiplier out_ch / group
        op, to_tf = "DepthwiseConv2dNative", (lambda a: a.reshape(group, -1, kh, kw).transpose(2, 3, 0, 1))
    else:
        raise UnsupportedOpError("Conv", node.name, f"grouped convolution (group={group}) has no TF.js kernel")
    filt, scales = c.weight(node.input[1], to_tf, 0, f"{node.name}/filter", node)
    attrs = {"strides": a_ints([1, *strides, 1]), "padding": a_str(padding), "data_format": a_str("NHWC"),
             "dilations": a_ints([1, *dilations, 1])}
    bias = c.constant(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
    y = _bias_and_scale(c, node, c.op(op, node.name, [x, filt], **attrs), bias, scales)
    c.hold(node.output[0], y, "nhwc")


@TFJS_OPS.register("Gemm")
@TFJS_OPS.register("MatMul")
def matmul(c: _Converter, node) -> None:
    at = c.attrs(node)
    if c.rank(node.input[0]) != 2 or at.get("transA", 0):
        raise UnsupportedOpError(node.op_type, node.name, "TF.js export supports [batch, features] x constant weight")
    w = c.constant(node.input[1], node)
    if w.ndim != 2 or at.get("alpha", 1.0) != 1.0:
        raise UnsupportedOpError(node.op_type, node.name, "TF.js export supports a 2-D weight with alpha = 1")
    trans_b = at.get("transB", 0) if node.op_type == "Gemm" else 0
    to_tf = (lambda a: a.T) if trans_b else (lambda a: a)
    filt, scales = c.weight(node.input[1], to_tf, 0 if trans_b else 1, f"{node.name}/weight", node)
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = c.constant(node.input[2], node).reshape(-1) * np.float32(at.get("beta", 1.0))
    y = c.op("MatMul", node.name, [c.tensor(node.input[0], "plain"), filt],
             transpose_a={"b": False}, transpose_b={"b": False})
    c.hold(node.output[0], _bias_and_scale(c, node, y, bias, scales), "plain")


@TFJS_OPS.register("Relu")
@TFJS_OPS.register("Sigmoid")
@TFJS_OPS.register("Tanh")
def unary(c: _Converter, node) -> None:
    name = node.input[0]
    c.hold(node.output[0], c.op(node.op_type, node.name, [c.tensor(name)]), c.layout(name))


@TFJS_OPS.register("Clip")
def clip(c: _Converter, node) -> None:
    at = c.attrs(node)
    lo = float(c.constant(node.input[1], node)) if len(node.input) > 1 and node.input[1] else at.get("min", -np.inf)
    hi = float(c.constant(node.input[2], node)) if len(node.input) > 2 and node.input[2] else at.get("max", np.inf)
    x = c.tensor(node.input[0])
    if (lo, hi) == (0.0, 6.0):
        y = c.op("Relu6", node.name, [x])
    elif lo == 0.0 and hi == np.inf:
        y = c.op("Relu", node.name, [x])
    else:
        y = c.op("ClipByValue", node.name, [x, c.const(f"{node.name}/min", np.array(lo, np.float32)),
                                            c.const(f"{node.name}/max", np.array(hi, np.float32))])
    c.hold(node.output[0], y, c.layout(node.input[0]))


def _elementwise_inputs(c: _Converter, node, names: list[str]) -> tuple[list[str], str]:
    """TF inputs of a broadcasting op, in one layout (NHWC if any tensor is), constants included."""
    tensors = [n for n in names if n not in c.consts]
    layout = "nhwc" if any(c.rank(n) == 4 and c.layout(n) == "nhwc" for n in tensors) else "plain"
    inputs = []
    for name in names:
        if name not in c.consts:
            inputs.append(c.tensor(name, layout))
            continue
        value = c.consts[name].astype(np.float32)
        if layout == "nhwc" and value.size > 1:
            if value.ndim > 4:
                raise UnsupportedOpError(node.op_type, node.name, "constant of rank > 4")
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(NCHW_TO_NHWC)
        inputs.append(c.const(f"{node.name}/{len(inputs)}", value))
    return inputs, layout


@TFJS_OPS.register("Add")
@TFJS_OPS.register("Sub")
@TFJS_OPS.register("Mul")
@TFJS_OPS.register("Div")
def binary(c: _Converter, node) -> None:
    tf_op = {"Add": "AddV2", "Sub": "Sub", "Mul": "Mul", "Div": "RealDiv"}[node.op_type]
    inputs, layout = _elementwise_inputs(c, node, list(node.input[:2]))
    c.hold(node.output[0], c.op(tf_op, node.name, inputs), layout)


@TFJS_OPS.register("GreaterOrEqual")
@TFJS_OPS.register("Greater")
@TFJS_OPS.register("LessOrEqual")
@TFJS_OPS.register("Less")
@TFJS_OPS.register("Equal")
def compare(c: _Converter, node) -> None:
    tf_op = {"GreaterOrEqual": "GreaterEqual", "Greater": "Greater", "LessOrEqual": "LessEqual", "Less": "Less",
             "Equal": "Equal"}[node.op_type]
    inputs, layout = _elementwise_inputs(c, node, list(node.input[:2]))
    c.hold(node.output[0], c.op(tf_op, node.name, inputs), layout)


@TFJS_OPS.register("Where")
def where(c: _Converter, node) -> None:
    """Where(cond, a, b) -> SelectV2 (e.g. a binary activation: sign as x >= 0 ? 1 : -1)."""
    inputs, layout = _elementwise_inputs(c, node, list(node.input[:3]))
    c.hold(node.output[0], c.op("SelectV2", node.name, inputs), layout)


def _pool_attrs(c: _Converter, node):
    at = c.attrs(node)
    if at.get("ceil_mode", 0) or any(d != 1 for d in at.get("dilations", [1, 1])):
        raise UnsupportedOpError(node.op_type, node.name, "ceil_mode / dilated pooling has no TF.js kernel")
    kernel = at["kernel_shape"]
    return at, kernel, at.get("strides", [1, 1]), at.get("pads", [0, 0, 0, 0])


@TFJS_OPS.register("MaxPool")
def max_pool(c: _Converter, node) -> None:
    _, kernel, strides, pads = _pool_attrs(c, node)
    x, padding = _spatial_padding(c, node, c.tensor(node.input[0], "nhwc"), pads, kernel, strides, (1, 1),
                                  pad_value=np.finfo(np.float32).min)
    y = c.op("MaxPool", node.name, [x], ksize=a_ints([1, *kernel, 1]), strides=a_ints([1, *strides, 1]),
             padding=a_str(padding), data_format=a_str("NHWC"))
    c.hold(node.output[0], y, "nhwc")


@TFJS_OPS.register("AveragePool")
def avg_pool(c: _Converter, node) -> None:
    at, kernel, strides, pads = _pool_attrs(c, node)
    x = c.tensor(node.input[0], "nhwc")
    if any(pads) and at.get("count_include_pad", 0):
        x, padding = _spatial_padding(c, node, x, pads, kernel, strides, (1, 1))
        if padding == "SAME":  # TF's SAME excludes the padding from the mean: pad explicitly
            paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
            x = c.op("Pad", f"{node.name}/pad", [x, c.const(f"{node.name}/paddings", paddings)],
                     Tpaddings=a_type("DT_INT32"))
            padding = "VALID"
    else:
        x, padding = _spatial_padding(c, node, x, pads, kernel, strides, (1, 1))
        if padding != "SAME" and any(pads):
            raise UnsupportedOpError("AveragePool", node.name, "padding that excludes pads but is not TF's SAME")
    y = c.op("AvgPool", node.name, [x], ksize=a_ints([1, *kernel, 1]), strides=a_ints([1, *strides, 1]),
             padding=a_str(padding), data_format=a_str("NHWC"))
    c.hold(node.output[0], y, "nhwc")


@TFJS_OPS.register("GlobalAveragePool")
@TFJS_OPS.register("GlobalMaxPool")
@TFJS_OPS.register("ReduceMean")
@TFJS_OPS.register("ReduceMax")
def reduce(c: _Converter, node) -> None:
    at = c.attrs(node)
    tf_op = "Mean" if node.op_type in ("GlobalAveragePool", "ReduceMean") else "Max"
    rank = c.rank(node.input[0])
    if node.op_type.startswith("Global"):
        axes, keep = [2, 3], 1
    else:
        axes = list(c.constant(node.input[1], node)) if len(node.input) > 1 and node.input[1] else at.get("axes")
        keep = at.get("keepdims", 1)
        if axes is None:
            axes = list(range(rank))
    axes = sorted(int(a) % rank for a in axes)
    layout = c.layout(node.input[0]) if rank == 4 else "plain"
    if layout == "nhwc":
        kept = [a for a in range(4) if a not in axes]
        if not keep and len([a for a in kept if a != 0]) > 1 and kept != [0, 2, 3]:
            layout = "plain"  # remaining dims would come out in another order: reduce in NCHW
        else:
            axes = sorted(AXIS_NCHW_TO_NHWC[a] for a in axes)
    x = c.tensor(node.input[0], layout)
    y = c.op(tf_op, node.name, [x, c.const(f"{node.name}/axes", np.array(axes))], keep_dims={"b": bool(keep)},
             Tidx=a_type("DT_INT32"))
    c.hold(node.output[0], y, layout if keep else "plain")


@TFJS_OPS.register("Reshape")
@TFJS_OPS.register("Flatten")
def reshape(c: _Converter, node) -> None:
    src = node.input[0]
    in_shape = c.shapes.get(src, [])
    if node.op_type == "Flatten":
        axis = c.attrs(node).get("axis", 1)
        shape = [-1 if axis == 1 else 1, int(np.prod(in_shape[axis:]))] if axis == 1 else None
        if shape is None or any(d <= 0 for d in in_shape[1:]):
            raise UnsupportedOpError("Flatten", node.name, "TF.js export supports Flatten(axis=1) of known shapes")
    else:
        shape = [int(d) for d in c.constant(node.input[1], node)]
        shape = [in_shape[i] if d == 0 and i < len(in_shape) and not c.attrs(node).get("allowzero", 0) else d
                 for i, d in enumerate(shape)]
        if shape and (shape[0] in (-1, 1) or (in_shape and shape[0] == in_shape[0])) and -1 not in shape[1:]:
            shape[0] = -1  # keep the batch dim free
    spatial = in_shape[2:4] if len(in_shape) == 4 else []
    # NHWC and NCHW have the same element order when H * W == 1: no transpose needed then
    layout = "plain" if not (spatial and all(d == 1 for d in spatial)) else None
    x = c.tensor(src, layout)
    y = c.op("Reshape", node.name, [x, c.const(f"{node.name}/shape", np.array(shape))], Tshape=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


@TFJS_OPS.register("Softmax")
def softmax(c: _Converter, node) -> None:
    rank = c.rank(node.input[0])
    axis = c.attrs(node).get("axis", -1) % rank
    layout = c.layout(node.input[0])
    if rank == 4 and layout == "nhwc" and axis == 1:
        x = c.tensor(node.input[0], "nhwc")
    elif axis == rank - 1:
        layout, x = "plain", c.tensor(node.input[0], "plain")
    else:
        raise UnsupportedOpError("Softmax", node.name, f"softmax over axis {axis} of a rank-{rank} tensor")
    c.hold(node.output[0], c.op("Softmax", node.name, [x]), layout)


@TFJS_OPS.register("Concat")
def concat(c: _Converter, node) -> None:
    rank = c.rank(node.output[0])
    axis = c.attrs(node)["axis"] % rank
    layout = "nhwc" if rank == 4 and any(c.layout(n) == "nhwc" for n in node.input if n in c.held) else "plain"
    if any(n in c.consts for n in node.input):
        raise UnsupportedOpError("Concat", node.name, "TF.js export concatenates computed tensors only")
    inputs = [c.tensor(n, layout) for n in node.input]
    tf_axis = AXIS_NCHW_TO_NHWC[axis] if layout == "nhwc" else axis
    y = c.op("ConcatV2", node.name, [*inputs, c.const(f"{node.name}/axis", np.array(tf_axis))],
             N={"i": str(len(inputs))}, Tidx=a_type("DT_INT32"))
    c.hold(node.output[0], y, layout)


@TFJS_OPS.register("Pad")
def pad(c: _Converter, node) -> None:
    at = c.attrs(node)
    mode = at.get("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        raise UnsupportedOpError("Pad", node.name, f"pad mode '{mode}' (constant only)")
    pads = [int(p) for p in c.constant(node.input[1], node)]
    value = float(c.constant(node.input[2], node)) if len(node.input) > 2 and node.input[2] else 0.0
    rank = len(pads) // 2
    pairs = np.array(list(zip(pads[:rank], pads[rank:])))
    layout = c.layout(node.input[0]) if rank == 4 else "plain"
    if layout == "nhwc":
        pairs = pairs[list(NCHW_TO_NHWC)]
    inputs = [c.tensor(node.input[0], layout), c.const(f"{node.name}/paddings", pairs)]
    if value:
        inputs.append(c.const(f"{node.name}/value", np.array(value, np.float32)))
    y = c.op("PadV2" if value else "Pad", node.name, inputs, Tpaddings=a_type("DT_INT32"))
    c.hold(node.output[0], y, layout)


@TFJS_OPS.register("BatchNormalization")
def batch_norm(c: _Converter, node) -> None:
    scale, bias, mean, var = (c.constant(n, node).astype(np.float32) for n in node.input[1:5])
    k = scale / np.sqrt(var + np.float32(c.attrs(node).get("epsilon", 1e-5)))
    layout = c.layout(node.input[0])
    if layout != "nhwc" and c.rank(node.input[0]) != 2:
        raise UnsupportedOpError("BatchNormalization", node.name, "batch norm on a non-image, non-[N, C] tensor")
    y = c.op("Mul", f"{node.name}/scale", [c.tensor(node.input[0]), c.const(f"{node.name}/k", k)])
    y = c.op("AddV2", node.name, [y, c.const(f"{node.name}/shift", bias - mean * k)])
    c.hold(node.output[0], y, layout)


@TFJS_OPS.register("Transpose")
def transpose(c: _Converter, node) -> None:
    perm = c.attrs(node).get("perm") or list(reversed(range(c.rank(node.input[0]))))
    x = c.tensor(node.input[0], "plain")
    y = c.op("Transpose", node.name, [x, c.const(f"{node.name}/perm", np.array(perm))], Tperm=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


@TFJS_OPS.register("Identity")
@TFJS_OPS.register("Dropout")
def identity(c: _Converter, node) -> None:
    c.held[node.output[0]] = c.held[node.input[0]]


def convert(onnx_model, plan_weights: dict[str, WeightParams], int8_weights: bool) -> TfGraph:
    """The TF op graph of `onnx_model`; with `int8_weights`, planned weights are stored as the
    plan's int8 integers (per-channel scales applied by a Mul after the layer)."""
    c = _Converter(onnx_model, plan_weights, int8_weights)
    g = c.model.graph
    unsupported = [n for n in g.node if n.op_type not in TFJS_OPS and n.op_type != "Constant"]
    if unsupported:
        raise UnsupportedOpError(unsupported[0].op_type, unsupported[0].name, WHERE)
    for inp in g.input:
        if inp.name in c.consts:
            continue
        shape = c.shapes[inp.name]
        name = c.unique(inp.name)
        c.graph.nodes.append({"name": name, "op": "Placeholder",
                              "attr": {"dtype": a_type(), "shape": a_shape(shape)}})
        c.graph.inputs.append((name, shape))
        c.hold(inp.name, name, "plain")
    for node in g.node:
        if node.op_type != "Constant":
            TFJS_OPS.get(node.op_type)(c, node)
    for out in g.output:
        y = c.tensor(out.name, "plain")
        name = c.unique(out.name) if out.name in c.names else out.name
        c.names.add(name)
        c.graph.nodes.append({"name": name, "op": "Identity", "input": [y], "attr": {"T": a_type()}})
        c.graph.outputs.append((name, c.shapes.get(out.name, [])))
    _hoist_relu(c.graph)
    _fuse(c.graph)
    return c.graph


# ------------------------------------------------------------------ fusion

FUSABLE = {"Conv2D": "_FusedConv2D", "DepthwiseConv2dNative": "FusedDepthwiseConv2dNative", "MatMul": "_FusedMatMul"}
ACTIVATIONS = {"Relu": "Relu", "Relu6": "Relu6", "Sigmoid": "Sigmoid"}


def _hoist_relu(graph: TfGraph) -> None:
    """Mul(x, s) -> Relu  becomes  Relu(x) -> Mul(s) when every s > 0 (equal results), so the
    ReLU can fuse into the kernel that computes x. The two nodes swap names and places, so
    consumers of the ReLU now read the Mul without rewiring."""
    consumers: dict[str, list[dict]] = {}
    for node in graph.nodes:
        for name in node.get("input", []):
            consumers.setdefault(name, []).append(node)
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    for mul in [n for n in graph.nodes if n.pop("positive_scale", False)]:
        users = consumers.get(mul["name"], [])
        if len(users) != 1 or users[0]["op"] != "Relu":
            continue
        relu = users[0]
        relu["input"], mul["input"] = [mul["input"][0]], [mul["name"], mul["input"][1]]
        relu["name"], mul["name"] = mul["name"], relu["name"]
        i, j = position[id(mul)], position[id(relu)]
        graph.nodes[i], graph.nodes[j] = relu, mul
        position[id(relu)], position[id(mul)] = i, j


def _fuse(graph: TfGraph) -> None:
    """Fold BiasAdd (+ activation) into the conv / matmul before it, as TF.js's converter does:
    one kernel call instead of three. The fused node takes the name of the last node it absorbs,
    so that node's consumers need no rewiring."""
    consumers: dict[str, list[dict]] = {}
    for node in graph.nodes:
        for name in node.get("input", []):
            consumers.setdefault(name, []).append(node)
    dropped: set[int] = set()
    for node in graph.nodes:
        users = consumers.get(node["name"], [])
        if node["op"] not in FUSABLE or len(users) != 1 or users[0]["op"] != "BiasAdd":
            continue
        bias = tail = users[0]
        fused_ops = ["BiasAdd"]
        after = consumers.get(bias["name"], [])
        if len(after) == 1 and after[0]["op"] in ACTIVATIONS:
            tail = after[0]
            fused_ops.append(ACTIVATIONS[tail["op"]])
        dropped |= {id(bias), id(tail)}
        node["op"] = FUSABLE[node["op"]]
        node["input"] = node["input"] + [bias["input"][1]]
        node["attr"].update({"fused_ops": a_strs(fused_ops), "num_args": {"i": "1"}, "epsilon": {"f": 0.0}})
        node["name"] = tail["name"]
    graph.nodes = [n for n in graph.nodes if id(n) not in dropped]
