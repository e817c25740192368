"""Arith ops -> C kernel calls: MUL, SUB, MAXIMUM, MINIMUM, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR
(int8, as LiteRT's reference kernels compute them; kernels in kernels/ep_arith.c).

One op family of the lowerings (the shared parts are in `lowering`); the `LOWERINGS` table at
the end goes into the registry built in `lowerings`.

What LiteRT's reference resolver (BUILTIN_REF) runs for int8, and so what is reproduced here:
MUL is reference_integer_ops::Mul, its multiplier input1_scale * input2_scale / output_scale
computed in float32 (`mul_multiplier`); SUB is reference_ops::Sub with ADD's Prepare (inputs
shifted left by 20, `requant.add_params`), the rescaled second input subtracted; MAXIMUM /
MINIMUM compare the int8 bytes without requantizing; RESIZE_NEAREST_NEIGHBOR picks source
pixels with float32 arithmetic (`nearest_indices`) and copies bytes; RESIZE_BILINEAR on int8
takes ResizeBilinearInteger, 1/1024 fixed-point positions (`bilinear_taps`). The binary ops
broadcast as ADD does (`lowering_elementwise.broadcast_strides`, walked with `coalesce_dims`);
the resize ops' source rows and columns are computed here once and passed as tables.
"""

from __future__ import annotations

import numpy as np

from edgeport.errors import InputError
from edgeport.mcu.compiler import requant
from edgeport.mcu.compiler.lowering import (
    MAX_DIMS,
    CStruct,
    Lower,
    Lowering,
    Ref,
    Step,
    _activation,
    _require_int8,
    _tensors,
    unsupported,
)
from edgeport.mcu.compiler.lowering_elementwise import broadcast_strides, coalesce_dims
from edgeport.mcu.compiler.tflite_ir import Graph, Op, Tensor

RESIZE_ONE = 1 << 10  # ResizeBilinearInteger's fixed point: positions in 1/1024 of a pixel


# ------------------------------------------------------------------ TFLite's Prepare arithmetic

def mul_multiplier(scale1: float, scale2: float, scale_out: float) -> tuple[int, int]:
    """TFLite's int8 MUL multiplier and shift (mul.cc Prepare): the scales are C floats, so
    input1_scale * input2_scale / output_scale is computed in float32, then QuantizeMultiplier."""
    real = np.float32(np.float32(scale1) * np.float32(scale2)) / np.float32(scale_out)
    return requant.quantize_multiplier(float(np.float32(real)))


def mul_product_bound(input1_offset: int, input2_offset: int) -> int:
    """The largest |(x1 + input1_offset) * (x2 + input2_offset)| over int8 x1, x2."""
    def largest(offset: int) -> int:
        return max(abs(-128 + offset), abs(127 + offset))

    return largest(input1_offset) * largest(input2_offset)


def _c_divide(x: np.ndarray, divisor: int) -> np.ndarray:
    """C integer division (truncates toward zero) of an int64 array by a positive divisor."""
    return np.where(x >= 0, x // divisor, -((-x) // divisor))


def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """reference_ops::GetNearestNeighbor for every output index: the input index it copies.

    LiteRT computes it in float32: scale = in / out (or (in - 1) / (out - 1) with align_corners),
    then floor((i + offset) * scale), or std::round with align_corners (offset 0.5 with
    half_pixel_centers), clamped to the input. NumPy's float32 operations round the same way.
    """
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    position = ((np.arange(out_size, dtype=np.float32) + offset) * scale).astype(np.float64)  # exact widening
    if align_corners:
        whole = np.trunc(position)  # std::round: halves away from zero (positions are >= 0)
        index = whole + (position - whole >= 0.5)
    else:
        index = np.floor(position)
    index = np.minimum(index.astype(np.int64), in_size - 1)
    return np.maximum(index, 0) if half_pixel_centers else index


def bilinear_taps(in_size: int, out_size: int, align_corners: bool,
                  half_pixel_centers: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """reference_ops::ResizeBilinearInteger's source positions along one axis.

    Args:
        in_size, out_size: the input and output size of the axis.
        align_corners, half_pixel_centers: the op's options (not both).

    Returns:
        Per output index: the lower and upper input index it interpolates between and its
        position past the lower one in 1/1024 steps (in [-512, 1024): negative before the first
        pixel's centre, where lower == upper).

    Raises:
        ValueError: where LiteRT's int32 position arithmetic would overflow or it would read past
            the input (sizes far beyond what a Cortex-M holds).
    """
    one = RESIZE_ONE
    if one * in_size + out_size // 2 > requant.INT32_MAX:
        raise ValueError(f"input size {in_size} overflows ResizeBilinearInteger's int32 scale")
    if align_corners and out_size > 1:
        scale = (one * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = (one * in_size + out_size // 2) // out_size
    scaled = np.arange(out_size, dtype=np.int64) * scale + (scale // 2 - one // 2 if half_pixel_centers else 0)
    if out_size and int(scaled[-1]) + one - 1 > requant.INT32_MAX:
        raise ValueError(f"output size {out_size} overflows ResizeBilinearInteger's int32 positions")
    lower = np.maximum(_c_divide(scaled, one), 0)
    upper = np.minimum(_c_divide(scaled + one - 1, one), in_size - 1)
    if np.any(lower > in_size - 1):
        raise ValueError(f"resizing {in_size} -> {out_size}: LiteRT's rounded scale reads past the input")
    return lower, upper, scaled - one * lower


# ------------------------------------------------------------------ binary ops

def _broadcast_fields(op: Op, graph: Graph, a: Tensor, b: Tensor, out: Tensor) -> dict:
    """ADD's broadcast fields (broadcast, dims, shape, strides1, strides2), the walk coalesced so
    that the kernels' rows are as long as possible."""
    try:
        expected = tuple(np.broadcast_shapes(tuple(a.shape), tuple(b.shape)))
    except ValueError:
        expected = None
    if expected != tuple(out.shape):
        raise InputError(f"{graph.source}: {op.name} at {graph.node_label(op)}: shapes {list(a.shape)} and "
                         f"{list(b.shape)} do not broadcast to {list(out.shape)}")
    broadcast = tuple(a.shape) != tuple(b.shape)
    if broadcast and len(out.shape) > MAX_DIMS:
        raise unsupported(op, graph, f"broadcast over {len(out.shape)} dimensions")
    shape, (strides1, strides2) = coalesce_dims(*broadcast_strides(a.shape, b.shape, out.shape)) if broadcast \
        else ([1], ([0], [0]))
    return {"broadcast": int(broadcast), "dims": len(shape), "shape": shape, "strides1": strides1,
            "strides2": strides2}


def _binary(op: Op, graph: Graph, ctx: Lowering, kernel: str, ctype: str, fields: dict) -> Step:
    (a, b), (out,) = _tensors(op, graph)
    name = f"op{op.index}"
    fields = {"size": out.size, **fields, **_broadcast_fields(op, graph, a, b, out)}
    return Step(op, [f"{kernel}(&{name}, ", ctx.operand(op.inputs[0]), ", ", ctx.operand(op.inputs[1]), ", ",
                     Ref(op.outputs[0]), ");"], [CStruct(ctype, name, fields)])


def _quantized_inputs(op: Op, graph: Graph) -> tuple[Tensor, Tensor, Tensor]:
    """The two int8 inputs and the output of MUL / SUB, each with one scale."""
    (a, b), (out,) = _tensors(op, graph)
    _require_int8(op, graph, a, b, out)
    if any(t.per_channel for t in (a, b, out)):
        raise unsupported(op, graph, "per-channel quantization")
    return a, b, out


def lower_mul(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """MUL: the offset inputs' product rescaled by TFLite's float32-computed multiplier, clamped."""
    a, b, out = _quantized_inputs(op, graph)
    multiplier, shift = mul_multiplier(a.scale, b.scale, out.scale)
    if shift > 0 and mul_product_bound(-a.zero_point, -b.zero_point) << shift > requant.INT32_MAX:
        raise unsupported(op, graph, f"the output multiplier's left shift by {shift} overflows int32 on the "
                                     "products (undefined in LiteRT's kernel)")
    act_min, act_max = _activation(op, graph, out)
    fields = {"input1_offset": -a.zero_point, "input2_offset": -b.zero_point, "output_offset": out.zero_point,
              "output_multiplier": multiplier, "output_shift": shift, "act_min": act_min, "act_max": act_max}
    return _binary(op, graph, ctx, "ep_mul_s8", "ep_mul_params", fields)


def lower_sub(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """SUB: ADD's fixed-point scheme (ep_add_params), the rescaled second input subtracted."""
    a, b, out = _quantized_inputs(op, graph)
    try:
        params = requant.add_params(a.scale, b.scale, out.scale)  # sub.cc prepares ADD's multipliers
    except ValueError as exc:
        # an output multiplier >= 1 reaches MultiplyByQuantizedMultiplierSmallerThanOneExp as a
        # negative right shift in LiteRT's int8 SUB: undefined, so nothing to match
        raise unsupported(op, graph, f"{str(exc).replace('ADD ', '')} in ADD's scheme") from None
    act_min, act_max = _activation(op, graph, out)
    fields = {"input1_offset": -a.zero_point, "input2_offset": -b.zero_point, "output_offset": out.zero_point,
              **params, "act_min": act_min, "act_max": act_max}
    return _binary(op, graph, ctx, "ep_sub_s8", "ep_add_params", fields)


def lower_minmax(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """MAXIMUM / MINIMUM: the int8 bytes compared as they are, whatever the tensors' quantization
    (LiteRT's kernel does not requantize either)."""
    (a, b), (out,) = _tensors(op, graph)
    if {a.dtype, b.dtype, out.dtype} != {"int8"}:
        raise unsupported(op, graph, f"{a.dtype} / {b.dtype} -> {out.dtype}")
    kernel = "ep_maximum_s8" if op.name == "MAXIMUM" else "ep_minimum_s8"
    return _binary(op, graph, ctx, kernel, "ep_minmax_params", {})


# ------------------------------------------------------------------ resize

def lower_resize(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR on int8 NHWC with a constant output size: the
    source rows and columns as tables of element offsets (see ep_resize_params)."""
    (inp, size), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp, out)
    if len(inp.shape) != 4:
        raise unsupported(op, graph, f"{len(inp.shape)}-D input (NHWC expected)")
    if size is None or not size.is_constant or size.dtype != "int32" or size.size != 2:
        raise unsupported(op, graph, "output size not a constant int32 pair")
    out_h, out_w = (int(v) for v in np.ravel(size.data))
    batches, in_h, in_w, depth = inp.shape
    if out_h <= 0 or out_w <= 0 or tuple(out.shape) != (batches, out_h, out_w, depth):
        raise InputError(f"{graph.source}: {op.name} at {graph.node_label(op)}: output shape {list(out.shape)} "
                         f"for input {list(inp.shape)} and size {[out_h, out_w]}")
    align, half = bool(op.options.get("align_corners", False)), bool(op.options.get("half_pixel_centers", False))
    name = f"op{op.index}"
    if op.name == "RESIZE_BILINEAR":
        if align and half:
            raise unsupported(op, graph, "align_corners with half_pixel_centers (LiteRT refuses it)")
        try:
            (y0, y1, dy), (x0, x1, dx) = (bilinear_taps(in_h, out_h, align, half),
                                          bilinear_taps(in_w, out_w, align, half))
        except ValueError as exc:
            raise unsupported(op, graph, str(exc)) from None
        rows, cols = np.stack([y0 * in_w * depth, y1 * in_w * depth, dy], 1), np.stack([x0 * depth, x1 * depth, dx], 1)
        kernel, what = "ep_resize_bilinear_s8", "lower, upper input {} offset, 1/1024 past lower"
    else:
        rows = nearest_indices(in_h, out_h, align, half) * in_w * depth
        cols = nearest_indices(in_w, out_w, align, half) * depth
        kernel, what = "ep_resize_nearest_s8", "offset of the input {} it copies"
    ctx.array(f"{name}_rows", "int32_t", rows, f"per output row: {what.format('row')}")
    ctx.array(f"{name}_cols", "int32_t", cols, f"per output column: {what.format('column')}")
    fields = {"batches": batches, "in_h": in_h, "in_w": in_w, "depth": depth, "out_h": out_h, "out_w": out_w}
    return Step(op, [f"{kernel}(&{name}, {name}_rows, {name}_cols, ", ctx.operand(op.inputs[0]), ", ",
                     Ref(op.outputs[0]), ");"], [CStruct("ep_resize_params", name, fields)])


# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {
    "MUL": lower_mul, "SUB": lower_sub, "MAXIMUM": lower_minmax, "MINIMUM": lower_minmax,
    "RESIZE_NEAREST_NEIGHBOR": lower_resize, "RESIZE_BILINEAR": lower_resize,
}
