"""TF.js conversions of element-wise ONNX ops, activations, normalizations and reductions.

Handlers register into `tfjs_graph.TFJS_OPS` (imported there). Element-wise ops keep the layout of
their input (NHWC between convolutions); normalizations over the channel axis use NHWC's last axis.
Activations TF.js has no kernel for are written with the kernels it has, in the formula's own
order of operations (HardSwish as x * relu6(x + 3) / 6, GELU with Erf, ...).
"""

from __future__ import annotations

import math

import numpy as np

from edgeport.errors import UnsupportedOpError
from edgeport.exporters.tfjs_graph import (AXIS_NCHW_TO_NHWC, TFJS_OPS, _Converter, _elementwise_inputs, a_str,
                                           a_type)

# ONNX op -> TF op of one input and the same shape
UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Erf": "Erf", "Neg": "Neg", "Exp": "Exp",
         "Log": "Log", "Sqrt": "Sqrt", "Abs": "Abs", "Reciprocal": "Reciprocal", "Floor": "Floor", "Ceil": "Ceil",
         "Sin": "Sin", "Cos": "Cos", "Softplus": "Softplus", "Sign": "Sign", "Round": "Round", "Not": "LogicalNot",
         "IsNaN": "IsNan", "IsInf": "IsInf", "Selu": "Selu"}
# ONNX op -> TF op of two broadcasting inputs (variadic ONNX Max / Min / Sum chain them)
BINARY = {"Add": "AddV2", "Sub": "Sub", "Mul": "Mul", "Div": "RealDiv", "Pow": "Pow", "Max": "Maximum",
          "Min": "Minimum", "Sum": "AddV2", "And": "LogicalAnd", "Or": "LogicalOr", "Mod": "FloorMod",
          "GreaterOrEqual": "GreaterEqual", "Greater": "Greater", "LessOrEqual": "LessEqual", "Less": "Less",
          "Equal": "Equal"}
CAST_TO = {1: "DT_FLOAT", 10: "DT_FLOAT", 11: "DT_FLOAT", 16: "DT_FLOAT", 9: "DT_BOOL"}  # else DT_INT32


def scalar(c: _Converter, name: str, value: float) -> str:
    return c.const(name, np.array(value, np.float32))


def _same_layout(c: _Converter, node, y: str) -> None:
    c.hold(node.output[0], y, c.layout(node.input[0]))


@TFJS_OPS.register("Relu")
@TFJS_OPS.register("Sigmoid")
@TFJS_OPS.register("Tanh")
@TFJS_OPS.register("Erf")
@TFJS_OPS.register("Neg")
@TFJS_OPS.register("Exp")
@TFJS_OPS.register("Log")
@TFJS_OPS.register("Sqrt")
@TFJS_OPS.register("Abs")
@TFJS_OPS.register("Reciprocal")
@TFJS_OPS.register("Floor")
@TFJS_OPS.register("Ceil")
@TFJS_OPS.register("Sin")
@TFJS_OPS.register("Cos")
@TFJS_OPS.register("Softplus")
@TFJS_OPS.register("Sign")
@TFJS_OPS.register("Round")
@TFJS_OPS.register("Not")
@TFJS_OPS.register("IsNaN")
@TFJS_OPS.register("IsInf")
def unary(c: _Converter, node) -> None:
    _same_layout(c, node, c.op(UNARY[node.op_type], node.name, [c.tensor(node.input[0])]))


@TFJS_OPS.register("Add")
@TFJS_OPS.register("Sub")
@TFJS_OPS.register("Mul")
@TFJS_OPS.register("Div")
@TFJS_OPS.register("Pow")
@TFJS_OPS.register("Max")
@TFJS_OPS.register("Min")
@TFJS_OPS.register("Sum")
@TFJS_OPS.register("And")
@TFJS_OPS.register("Or")
@TFJS_OPS.register("Mod")
@TFJS_OPS.register("GreaterOrEqual")
@TFJS_OPS.register("Greater")
@TFJS_OPS.register("LessOrEqual")
@TFJS_OPS.register("Less")
@TFJS_OPS.register("Equal")
def binary(c: _Converter, node) -> None:
    names = [n for n in node.input if n]
    if node.op_type == "Pow" and names[1] in c.consts and c.consts[names[1]].size == 1:
        exponent = float(c.consts[names[1]])
        special = {1.0: None, 2.0: "Square", 0.5: "Sqrt", -1.0: "Reciprocal"}
        if exponent in special:
            x = c.tensor(names[0])
            _same_layout(c, node, c.op(special[exponent], node.name, [x]) if special[exponent] else x)
            return
    if node.op_type == "Div" and all(c.tf_dtype(n) == "DT_INT32" for n in names):
        raise UnsupportedOpError("Div", node.name, "integer division (TF.js RealDiv is float division)")
    if node.op_type == "Mod" and c.attrs(node).get("fmod", 0):
        raise UnsupportedOpError("Mod", node.name, "fmod=1 (C remainder) has no TF.js kernel")
    inputs, layout = _elementwise_inputs(c, node, names)
    y = inputs[0]
    for i, other in enumerate(inputs[1:]):
        last = i == len(inputs) - 2
        y = c.op(BINARY[node.op_type], node.name if last else f"{node.name}/{i}", [y, other])
    c.hold(node.output[0], y, layout)


@TFJS_OPS.register("Where")
def where(c: _Converter, node) -> None:
    """Where(cond, a, b) -> SelectV2 (broadcasting)."""
    inputs, layout = _elementwise_inputs(c, node, list(node.input[:3]))
    c.hold(node.output[0], c.op("SelectV2", node.name, inputs), layout)


@TFJS_OPS.register("Cast")
def cast(c: _Converter, node) -> None:
    src, dst = c.tf_dtype(node.input[0]), CAST_TO.get(c.attrs(node)["to"], "DT_INT32")
    x = c.tensor(node.input[0])
    y = x if src == dst else c.op("Cast", node.name, [x], SrcT=a_type(src), DstT=a_type(dst))
    _same_layout(c, node, y)


@TFJS_OPS.register("LeakyRelu")
def leaky_relu(c: _Converter, node) -> None:
    alpha = float(c.attrs(node).get("alpha", 0.01))
    _same_layout(c, node, c.op("LeakyRelu", node.name, [c.tensor(node.input[0])], alpha={"f": alpha}))


@TFJS_OPS.register("Elu")
def elu(c: _Converter, node) -> None:
    alpha = float(c.attrs(node).get("alpha", 1.0))
    x = c.tensor(node.input[0])
    y = c.op("Elu", node.name if alpha == 1.0 else f"{node.name}/elu", [x])
    if alpha != 1.0:  # alpha * elu(x) below 0, x above
        neg = c.op("Mul", f"{node.name}/neg", [c.op("Minimum", f"{node.name}/min", [y, scalar(c, f"{node.name}/0", 0.0)]),
                                               scalar(c, f"{node.name}/alpha", alpha)])
        y = c.op("AddV2", node.name, [c.op("Relu", f"{node.name}/pos", [x]), neg])
    _same_layout(c, node, y)


@TFJS_OPS.register("PRelu")
def prelu(c: _Converter, node) -> None:
    inputs, layout = _elementwise_inputs(c, node, list(node.input[:2]))
    c.hold(node.output[0], c.op("Prelu", node.name, inputs), layout)


@TFJS_OPS.register("HardSigmoid")
@TFJS_OPS.register("HardSwish")
def hard_sigmoid(c: _Converter, node) -> None:
    """HardSigmoid: clip(alpha * x + beta, 0, 1); HardSwish: x * relu6(x + 3) / 6."""
    x = c.tensor(node.input[0])
    if node.op_type == "HardSwish":
        y = c.op("Relu6", f"{node.name}/relu6", [c.op("AddV2", f"{node.name}/plus3", [x, scalar(c, f"{node.name}/3", 3.0)])])
        y = c.op("Mul", node.name, [c.op("Mul", f"{node.name}/times_x", [x, y]), scalar(c, f"{node.name}/sixth", 1 / 6)])
    else:
        at = c.attrs(node)
        y = c.op("Mul", f"{node.name}/alpha", [x, scalar(c, f"{node.name}/alpha", at.get("alpha", 0.2))])
        y = c.op("AddV2", f"{node.name}/beta", [y, scalar(c, f"{node.name}/beta", at.get("beta", 0.5))])
        y = c.op("ClipByValue", node.name, [y, scalar(c, f"{node.name}/0", 0.0), scalar(c, f"{node.name}/1", 1.0)])
    _same_layout(c, node, y)


@TFJS_OPS.register("Gelu")
def gelu(c: _Converter, node) -> None:
    """0.5 * x * (1 + erf(x / sqrt 2)), or the tanh approximation when `approximate` says so."""
    approximate = c.attrs(node).get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    x = c.tensor(node.input[0])
    if approximate == "tanh":
        cube = c.op("Mul", f"{node.name}/cube", [c.op("Square", f"{node.name}/sq", [x]), x])
        inner = c.op("AddV2", f"{node.name}/inner", [x, c.op("Mul", f"{node.name}/c", [cube, scalar(c, f"{node.name}/k", 0.044715)])])
        inner = c.op("Mul", f"{node.name}/scaled", [inner, scalar(c, f"{node.name}/s", math.sqrt(2 / math.pi))])
        t = c.op("Tanh", f"{node.name}/tanh", [inner])
    else:
        t = c.op("Erf", f"{node.name}/erf", [c.op("Mul", f"{node.name}/scaled", [x, scalar(c, f"{node.name}/s", 1 / math.sqrt(2))])])
    t = c.op("AddV2", f"{node.name}/one_plus", [t, scalar(c, f"{node.name}/1", 1.0)])
    y = c.op("Mul", node.name, [c.op("Mul", f"{node.name}/half_x", [x, scalar(c, f"{node.name}/half", 0.5)]), t])
    _same_layout(c, node, y)


def _normalize(c: _Converter, node, x: str, axes: list[int], eps: float) -> str:
    """(x - mean) / sqrt(var + eps) over `axes` (TF axes of x)."""
    axes_const = c.const(f"{node.name}/axes", np.array(axes))
    mean = c.op("Mean", f"{node.name}/mean", [x, axes_const], keep_dims={"b": True}, Tidx=a_type("DT_INT32"))
    centered = c.op("Sub", f"{node.name}/centered", [x, mean])
    var = c.op("Mean", f"{node.name}/var", [c.op("Square", f"{node.name}/sq", [centered]), axes_const],
               keep_dims={"b": True}, Tidx=a_type("DT_INT32"))
    inv = c.op("Rsqrt", f"{node.name}/rsqrt", [c.op("AddV2", f"{node.name}/var_eps", [var, scalar(c, f"{node.name}/eps", eps)])])
    return c.op("Mul", f"{node.name}/normalized", [centered, inv])


def _affine(c: _Converter, node, y: str, scale: np.ndarray | None, bias: np.ndarray | None) -> str:
    if scale is not None and not np.all(scale == 1):
        y = c.op("Mul", f"{node.name}/scale", [y, c.const(f"{node.name}/gamma", scale.astype(np.float32))])
    if bias is not None and np.any(bias):
        y = c.op("AddV2", f"{node.name}/shift", [y, c.const(f"{node.name}/beta", bias.astype(np.float32))])
    return y


@TFJS_OPS.register("LayerNormalization")
def layer_norm(c: _Converter, node) -> None:
    rank = c.rank(node.input[0])
    axis = c.attrs(node).get("axis", -1) % rank
    scale = c.constant(node.input[1], node)
    bias = c.constant(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
    x = c.tensor(node.input[0], "plain")  # the normalized axes are the last ones in ONNX order
    y = _normalize(c, node, x, list(range(axis, rank)), float(c.attrs(node).get("epsilon", 1e-5)))
    c.hold(node.output[0], _affine(c, node, y, scale, bias), "plain")


@TFJS_OPS.register("InstanceNormalization")
def instance_norm(c: _Converter, node) -> None:
    """Per sample and channel over the spatial axes: NHWC's H, W for images, else ONNX's axes 2.."""
    rank = c.rank(node.input[0])
    if rank < 3:
        raise UnsupportedOpError("InstanceNormalization", node.name, "input of rank < 3")
    scale, bias = c.constant(node.input[1], node), c.constant(node.input[2], node)
    eps = float(c.attrs(node).get("epsilon", 1e-5))
    if rank == 4:
        y = _normalize(c, node, c.tensor(node.input[0], "nhwc"), [1, 2], eps)
        c.hold(node.output[0], _affine(c, node, y, scale, bias), "nhwc")
        return
    y = _normalize(c, node, c.tensor(node.input[0], "plain"), list(range(2, rank)), eps)
    shape = (-1,) + (1,) * (rank - 2)
    c.hold(node.output[0], _affine(c, node, y, scale.reshape(shape), bias.reshape(shape)), "plain")


@TFJS_OPS.register("BatchNormalization")
def batch_norm(c: _Converter, node) -> None:
    scale, bias, mean, var = (c.constant(n, node).astype(np.float32) for n in node.input[1:5])
    k = scale / np.sqrt(var + np.float32(c.attrs(node).get("epsilon", 1e-5)))
    layout = c.layout(node.input[0])
    rank = c.rank(node.input[0])
    if layout != "nhwc" and rank != 2:
        if rank < 2:
            raise UnsupportedOpError("BatchNormalization", node.name, "batch norm of a tensor of rank < 2")
        shape = (-1,) + (1,) * (rank - 2)  # channels on axis 1 of a plain tensor: [C, 1, ...]
        k, shift = k.reshape(shape), (bias - mean * k).reshape(shape)
    else:
        shift = bias - mean * k
    y = c.op("Mul", f"{node.name}/scale", [c.tensor(node.input[0]), c.const(f"{node.name}/k", k)])
    y = c.op("AddV2", node.name, [y, c.const(f"{node.name}/shift", shift)])
    c.hold(node.output[0], y, layout)


@TFJS_OPS.register("GlobalAveragePool")
@TFJS_OPS.register("GlobalMaxPool")
@TFJS_OPS.register("ReduceMean")
@TFJS_OPS.register("ReduceMax")
@TFJS_OPS.register("ReduceMin")
@TFJS_OPS.register("ReduceSum")
@TFJS_OPS.register("ReduceProd")
@TFJS_OPS.register("ReduceL2")
@TFJS_OPS.register("ReduceSumSquare")
def reduce(c: _Converter, node) -> None:
    at = c.attrs(node)
    tf_op = {"GlobalAveragePool": "Mean", "ReduceMean": "Mean", "ReduceMin": "Min", "ReduceSum": "Sum", "ReduceL2": "Sum", "ReduceSumSquare": "Sum",
             "ReduceProd": "Prod"}.get(node.op_type, "Max")
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
    if node.op_type in ("ReduceL2", "ReduceSumSquare"):
        x = c.op("Square", f"{node.name}/square", [x])
    y = c.op(tf_op, node.name if not node.op_type == "ReduceL2" else f"{node.name}/sum",
             [x, c.const(f"{node.name}/axes", np.array(axes))], keep_dims={"b": bool(keep)},
             Tidx=a_type("DT_INT32"))
    if node.op_type == "ReduceL2":
        y = c.op("Sqrt", node.name, [y])
    c.hold(node.output[0], y, layout if keep else "plain")


