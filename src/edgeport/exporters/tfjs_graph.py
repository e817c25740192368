"""ONNX float graph -> TensorFlow op graph in the layout TF.js kernels want (NHWC).

Written here rather than taken from the `tensorflowjs` converter: that package pins TensorFlow
and jax versions that conflict with the rest of the toolchain (see DESIGN.md), and going
through TensorFlow would also lose the ONNX tensor names the quantization plan is keyed by.

Layout: the graph keeps the source model's NCHW contract at its input and output. Rank-4
tensors are carried in NHWC between convolutions; `_Converter.tensor(name, layout)` inserts a
Transpose only where an op needs the other layout (before a Flatten/Reshape of a spatial map,
for example), so a CNN gets one Transpose at the input and at most one before its classifier.

One handler per ONNX op type, registered in `TFJS_OPS` where it is defined (core ops here, op
families in `tfjs_ops`, `tfjs_ops_layout` and `tfjs_ops_rnn`, imported at the end of this module); an op without a
handler is an UnsupportedOpError naming the op and the node. A node whose inputs are all known
constants (shape arithmetic, a `Shape` of a tensor of static shape) is evaluated at conversion
time by onnx's reference evaluator and becomes a constant, whatever its op.
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
# ONNX elem type -> the TF dtype TF.js computes it in (TF.js has no int64 / float64 / int8 tensors)
ONNX_TO_TF_DTYPE = {1: "DT_FLOAT", 2: "DT_INT32", 3: "DT_INT32", 4: "DT_INT32", 5: "DT_INT32", 6: "DT_INT32",
                    7: "DT_INT32", 9: "DT_BOOL", 10: "DT_FLOAT", 11: "DT_FLOAT", 12: "DT_INT32", 13: "DT_INT32",
                    16: "DT_FLOAT"}


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
    dtypes: dict[str, str] = field(default_factory=dict)  # input / output name -> TF dtype, when not DT_FLOAT


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
        for i, node in enumerate(g.node):  # TF node names come from ONNX node names: none may be empty
            node.name = node.name or f"{node.op_type}_{i}"
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for node in g.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.shapes: dict[str, list] = {}
        self.types: dict[str, int] = {}  # ONNX elem type (onnx.TensorProto.FLOAT, INT64, BOOL, ...)
        for info in list(g.value_info) + list(g.input) + list(g.output):
            dims = info.type.tensor_type.shape.dim
            self.shapes[info.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
            self.types[info.name] = info.type.tensor_type.elem_type
        self.plan_weights = plan_weights if int8_weights else {}
        self.graph = TfGraph()
        self.held: dict[str, tuple[str, str]] = {}  # onnx tensor -> (tf node, layout "nhwc" | "plain")
        self.views: dict[tuple[str, str], str] = {}
        self.names: set[str] = set()
        self.onnx = onnx

    # --- emitting
    def unique(self, base: str) -> str:
        base = base.replace(":", "_")
        name, i = base, 1
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
        values = np.array(values, order="C")  # not ascontiguousarray: a scalar stays 0-d
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

    def tf_dtype(self, name: str) -> str:
        """TF dtype of an ONNX tensor as TF.js holds it: integers in int32, booleans in bool."""
        if name in self.consts:
            kind = self.consts[name].dtype.kind
            return {"b": "DT_BOOL", "i": "DT_INT32", "u": "DT_INT32"}.get(kind, "DT_FLOAT")
        return ONNX_TO_TF_DTYPE.get(self.types.get(name, 1), "DT_FLOAT")

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


MAX_DENSE_GROUPS = 8  # a grouped conv runs as a dense one: `group` times the work of the grouped kernel


def block_diagonal(weight: np.ndarray, group: int) -> np.ndarray:
    """ONNX grouped conv weight [out, in / group, kh, kw] as a dense [out, in, kh, kw] weight whose
    off-group blocks are zero (zeros stay exactly zero through int8 quantization too)."""
    out_ch, per_group = weight.shape[:2]
    dense = np.zeros((out_ch, per_group * group, *weight.shape[2:]), weight.dtype)
    step = out_ch // group
    for g in range(group):
        dense[g * step:(g + 1) * step, g * per_group:(g + 1) * per_group] = weight[g * step:(g + 1) * step]
    return dense


def _grouped_conv(c: _Converter, node, x: str, w: np.ndarray, group: int, attrs: dict) -> str:
    per_out, per_in = w.shape[0] // group, w.shape[1]
    split = c.op("SplitV", f"{node.name}/groups", [x, c.const(f"{node.name}/group_sizes", np.array([per_in] * group)),
                                                   c.const(f"{node.name}/group_axis", np.array(3))],
                 num_split={"i": str(group)}, Tlen=a_type("DT_INT32"))
    parts = [c.op("Conv2D", f"{node.name}/g{g}", [f"{split}:{g}" if g else split, c.const(
        f"{node.name}/filter{g}", w[g * per_out:(g + 1) * per_out].transpose(2, 3, 1, 0))], **attrs) for g in range(group)]
    return c.op("ConcatV2", node.name, [*parts, c.const(f"{node.name}/concat_axis", np.array(3))],
                N={"i": str(group)}, Tidx=a_type("DT_INT32"))


@TFJS_OPS.register("Conv")
def conv(c: _Converter, node) -> None:
    """2-D convolution in NHWC; a 1-D one ([N, C, L]) runs as a 2-D one of height 1."""
    at = c.attrs(node)
    w = c.constant(node.input[1], node)
    if w.ndim not in (3, 4):
        raise UnsupportedOpError("Conv", node.name, "TF.js export supports 1-D and 2-D convolutions only")
    one_d = w.ndim == 3
    lift = (lambda a: a[:, :, None, :]) if one_d else (lambda a: a)  # [O, I, k] -> [O, I, 1, k]
    _, in_per_group, kh, kw = lift(w).shape
    group = at.get("group", 1)
    strides, dilations = at.get("strides", [1] * (w.ndim - 2)), at.get("dilations", [1] * (w.ndim - 2))
    pads = at.get("pads", [0] * 2 * (w.ndim - 2))
    if one_d:
        strides, dilations, pads = [1, *strides], [1, *dilations], [0, pads[0], 0, pads[1]]
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOpError("Conv", node.name, "auto_pad is not supported by edgeport's TF.js export")
    if one_d:  # [N, C, L] -> [N, 1, L, C]
        x = c.op("Transpose", f"{node.name}/nlc", [c.tensor(node.input[0], "plain"),
                                                   c.const(f"{node.name}/nlc_perm", np.array([0, 2, 1]))],
                 Tperm=a_type("DT_INT32"))
        x = c.op("ExpandDims", f"{node.name}/n1lc", [x, c.const(f"{node.name}/h_axis", np.array(1, np.int32))],
                 Tdim=a_type("DT_INT32"))
    else:
        x = c.tensor(node.input[0], "nhwc")
    x, padding = _spatial_padding(c, node, x, pads, (kh, kw), strides, dilations)
    if group == 1:
        op, to_tf = "Conv2D", (lambda a: lift(a).transpose(2, 3, 1, 0))
    elif in_per_group == 1:  # depthwise, channel multiplier out_ch / group
        op, to_tf = "DepthwiseConv2dNative", (lambda a: lift(a).reshape(group, -1, kh, kw).transpose(2, 3, 0, 1))
    elif group <= MAX_DENSE_GROUPS or node.input[1] in c.plan_weights:
        # TF.js has no grouped kernel: one Conv2D with a block-diagonal filter (int8 plan weights
        # always: the plan's weight stays one tensor)
        op, to_tf = "Conv2D", (lambda a: block_diagonal(lift(a), group).transpose(2, 3, 1, 0))
    else:
        op, to_tf = "Conv2D", None
    attrs = {"strides": a_ints([1, *strides, 1]), "padding": a_str(padding), "data_format": a_str("NHWC"),
             "dilations": a_ints([1, *dilations, 1])}
    bias = c.constant(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
    if to_tf is None:  # many groups: one Conv2D per group on a channel split, concatenated
        y, scales = _grouped_conv(c, node, x, lift(w), group, attrs), None
    else:
        filt, scales = c.weight(node.input[1], to_tf, 0, f"{node.name}/filter", node)
        y = c.op(op, node.name, [x, filt], **attrs)
    y = _bias_and_scale(c, node, y, bias, scales)
    if one_d:  # [N, 1, L', O] -> [N, O, L']
        out = c.shapes.get(node.output[0], [])
        if len(out) != 3 or min(out[1:]) <= 0:
            raise UnsupportedOpError("Conv", node.name, "TF.js export needs the output length of a 1-D convolution")
        y = c.op("Reshape", f"{node.name}/nlo", [y, c.const(f"{node.name}/nlo_shape", np.array([-1, out[2], out[1]]))],
                 Tshape=a_type("DT_INT32"))
        y = c.op("Transpose", f"{node.name}/nol", [y, c.const(f"{node.name}/nol_perm", np.array([0, 2, 1]))],
                 Tperm=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain" if one_d else "nhwc")


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
    integer = any(c.tf_dtype(n) == "DT_INT32" for n in tensors)
    inputs = []
    for name in names:
        if name not in c.consts:
            inputs.append(c.tensor(name, layout))
            continue
        value = c.consts[name]
        if layout == "nhwc" and value.size > 1:
            if value.ndim > 4:
                raise UnsupportedOpError(node.op_type, node.name, "constant of rank > 4")
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(NCHW_TO_NHWC)
        if value.dtype == bool:
            const = c.const(f"{node.name}/{len(inputs)}", value.astype(np.int32))
            inputs.append(c.op("Cast", f"{node.name}/{len(inputs)}_bool", [const], SrcT=a_type("DT_INT32"),
                               DstT=a_type("DT_BOOL")))
            continue
        inputs.append(c.const(f"{node.name}/{len(inputs)}", value.astype(np.int32 if integer and value.dtype.kind in "iu"
                                                                           else np.float32)))
    return inputs, layout


def _pool_attrs(c: _Converter, node):
    at = c.attrs(node)
    if (at.get("ceil_mode", 0) and node.op_type != "MaxPool") or any(d != 1 for d in at.get("dilations", [1, 1])):
        raise UnsupportedOpError(node.op_type, node.name, "ceil_mode / dilated pooling has no TF.js kernel")
    kernel = at["kernel_shape"]
    return at, kernel, at.get("strides", [1, 1]), list(at.get("pads", [0, 0, 0, 0]))


def ceil_mode_pads(size: int, kernel: int, stride: int, begin: int, end: int) -> int:
    """End padding that makes a floor-mode pool give ceil_mode's output size (a last window must
    start inside the input or its begin padding, as ONNX and PyTorch define it)."""
    span = size + begin + end - kernel
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + begin:
        out -= 1
    return max((out - 1) * stride + kernel - size - begin, end)


@TFJS_OPS.register("MaxPool")
def max_pool(c: _Converter, node) -> None:
    at, kernel, strides, pads = _pool_attrs(c, node)
    if at.get("ceil_mode", 0):
        in_hw = c.shapes.get(node.input[0], [])[2:4]
        if len(in_hw) != 2 or min(in_hw) <= 0:
            raise UnsupportedOpError("MaxPool", node.name, "ceil_mode needs a known input height and width")
        pads[2], pads[3] = (ceil_mode_pads(in_hw[i], kernel[i], strides[i], pads[i], pads[i + 2]) for i in range(2))
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


@TFJS_OPS.register("Identity")
@TFJS_OPS.register("Dropout")
def identity(c: _Converter, node) -> None:
    c.held[node.output[0]] = c.held[node.input[0]]


def convert(onnx_model, plan_weights: dict[str, WeightParams], int8_weights: bool) -> TfGraph:
    """The TF op graph of `onnx_model`; with `int8_weights`, planned weights are stored as the
    plan's int8 integers (per-channel scales applied by a Mul after the layer)."""
    c = _Converter(onnx_model, plan_weights, int8_weights)
    g = c.model.graph
    foldable = _foldable_nodes(c)
    unsupported = [n for i, n in enumerate(g.node) if n.op_type not in TFJS_OPS and i not in foldable]
    if unsupported:
        raise UnsupportedOpError(unsupported[0].op_type, unsupported[0].name, WHERE)
    for inp in g.input:
        if inp.name in c.consts:
            continue
        shape, dtype = c.shapes[inp.name], c.tf_dtype(inp.name)
        name = c.unique(inp.name)
        c.graph.nodes.append({"name": name, "op": "Placeholder",
                              "attr": {"dtype": a_type(dtype), "shape": a_shape(shape)}})
        c.graph.inputs.append((name, shape))
        if dtype != "DT_FLOAT":
            c.graph.dtypes[name] = dtype
        c.hold(inp.name, name, "plain")
    for i, node in enumerate(g.node):
        if i in foldable:
            _fold(c, node)
        else:
            TFJS_OPS.get(node.op_type)(c, node)
    for out in g.output:
        if out.name in c.consts and out.name not in c.held:
            c.hold(out.name, c.const(f"{out.name}/value", c.consts[out.name]), "plain")
        y = c.tensor(out.name, "plain")
        name = c.unique(out.name) if out.name in c.names else out.name
        c.names.add(name)
        c.graph.nodes.append({"name": name, "op": "Identity", "input": [y], "attr": {"T": a_type()}})
        c.graph.outputs.append((name, c.shapes.get(out.name, [])))
        if c.tf_dtype(out.name) != "DT_FLOAT":
            c.graph.dtypes[name] = c.tf_dtype(out.name)
    _hoist_relu(c.graph)
    _fuse(c.graph)
    return c.graph


def _foldable_nodes(c: _Converter) -> set[int]:
    """Indices of the nodes computed at conversion time: every input a constant (after the nodes
    before it fold), or a `Shape` of a tensor whose shape is static. Random ops never fold."""
    known = set(c.consts)
    folded = set()
    for i, node in enumerate(c.model.graph.node):
        inputs = [n for n in node.input if n]
        if node.op_type == "Constant" or (node.op_type not in NEVER_FOLD and inputs and all(n in known for n in inputs)):
            folded.add(i)
        elif node.op_type in ("Shape", "Size") and _static_shape(c, node.input[0]):
            folded.add(i)
        else:
            continue
        known.update(node.output)
    return folded


NEVER_FOLD = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


def _static_shape(c: _Converter, name: str) -> list[int] | None:
    shape = c.consts[name].shape if name in c.consts else c.shapes.get(name)
    return list(shape) if shape is not None and all(d > 0 for d in shape) else None


def _fold(c: _Converter, node) -> None:
    """Evaluate `node` (all inputs known) with onnx's reference evaluator into `c.consts`."""
    if node.op_type == "Constant":
        return
    if node.op_type in ("Shape", "Size") and node.input[0] not in c.consts:
        shape = np.array(_static_shape(c, node.input[0]), np.int64)
        at = c.attrs(node)
        value = shape[at.get("start", 0):at.get("end", len(shape))] if node.op_type == "Shape" else np.prod(shape)
        c.consts[node.output[0]] = np.asarray(value, np.int64)
        return
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = [n for n in node.input if n]
    model = helper.make_model(
        helper.make_graph([node], "fold", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(
            c.consts[n].dtype), c.consts[n].shape) for n in inputs],
            [helper.make_empty_tensor_value_info(o) for o in node.output if o]),
        opset_imports=list(c.model.opset_import))
    try:
        values = ReferenceEvaluator(model).run(None, {n: c.consts[n] for n in inputs})
    except Exception as exc:  # noqa: BLE001 - the evaluator's message names what it could not do
        raise UnsupportedOpError(node.op_type, node.name, f"constant folding failed: {exc}") from None
    for name, value in zip([o for o in node.output if o], values):
        c.consts[name] = np.asarray(value)


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


# Op families defined in their own modules register into TFJS_OPS here, where the registry is built.
from edgeport.exporters import tfjs_ops, tfjs_ops_layout, tfjs_ops_rnn  # noqa: E402,F401
