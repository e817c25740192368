"""TF.js conversions of ONNX ops that move, select or combine elements: reshapes, slices, splits,
gathers, concatenation, padding, broadcasting, matrix products, softmax, resizing and transposed
convolution.

Handlers register into `tfjs_graph.TFJS_OPS` (imported there). Shape arguments must be constants by
the time a node converts (the converter folds static shape arithmetic before); ops that index an
axis (Slice, Split, Gather, Concat, Softmax) work in NHWC when their input is held so, with the
axis mapped, else in the ONNX order ("plain").
"""

from __future__ import annotations

import numpy as np

from edgeport.errors import UnsupportedOpError
from edgeport.quantizers import qmath
from edgeport.exporters.tfjs_graph import (AXIS_NCHW_TO_NHWC, NCHW_TO_NHWC, TFJS_OPS, _bias_and_scale, _Converter,
                                           _spatial_padding, a_ints, a_str, a_type)

INT32_MAX = 2**31 - 1


def _axis_layout(c: _Converter, name: str, axis: int) -> tuple[str, int]:
    """Layout to index ONNX `axis` of `name` in (its own when NHWC), and the axis in that layout."""
    if c.rank(name) == 4 and name in c.held and c.layout(name) == "nhwc":
        return "nhwc", AXIS_NCHW_TO_NHWC[axis]
    return "plain", axis


def _out_shape(c: _Converter, node, index: int = 0) -> list[int]:
    """Static ONNX output shape, the batch dim as -1 when it is the only unknown one."""
    shape = list(c.shapes.get(node.output[index], []))
    if not shape or any(d <= 0 for d in shape[1:]):
        raise UnsupportedOpError(node.op_type, node.name, "TF.js export needs a known output shape")
    return [-1 if shape[0] <= 0 else shape[0]] + shape[1:]


def _reshape(c: _Converter, node, src: str, shape: list[int]) -> None:
    in_shape = c.shapes.get(src, [])
    spatial = in_shape[2:4] if len(in_shape) == 4 else []
    # NHWC and NCHW have the same element order when H * W == 1: no transpose needed then
    layout = "plain" if not (spatial and all(d == 1 for d in spatial)) else None
    y = c.op("Reshape", node.name, [c.tensor(src, layout), c.const(f"{node.name}/shape", np.array(shape))],
             Tshape=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


@TFJS_OPS.register("Reshape")
@TFJS_OPS.register("Flatten")
@TFJS_OPS.register("Squeeze")
@TFJS_OPS.register("Unsqueeze")
def reshape(c: _Converter, node) -> None:
    src = node.input[0]
    in_shape = c.shapes.get(src, [])
    if node.op_type != "Reshape":
        shape = _out_shape(c, node)
    else:
        shape = [int(d) for d in c.constant(node.input[1], node)]
        shape = [in_shape[i] if d == 0 and i < len(in_shape) and not c.attrs(node).get("allowzero", 0) else d
                 for i, d in enumerate(shape)]
        if shape and (shape[0] in (-1, 1) or (in_shape and shape[0] == in_shape[0])) and -1 not in shape[1:]:
            shape[0] = -1  # keep the batch dim free
        out = c.shapes.get(node.output[0], [])
        if shape.count(-1) > 1 and len(out) == len(shape) and all(d > 0 for d in out[1:]):
            shape = [-1] + list(out[1:])  # a 0 copied a dynamic batch dim: take the other dims as inferred
    _reshape(c, node, src, shape)


@TFJS_OPS.register("Transpose")
def transpose(c: _Converter, node) -> None:
    perm = c.attrs(node).get("perm") or list(reversed(range(c.rank(node.input[0]))))
    x = c.tensor(node.input[0], "plain")
    y = c.op("Transpose", node.name, [x, c.const(f"{node.name}/perm", np.array(perm))], Tperm=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


def _const_input(c: _Converter, node, index: int, default=None):
    if len(node.input) > index and node.input[index]:
        return [int(v) for v in np.asarray(c.constant(node.input[index], node)).reshape(-1)]
    return default


@TFJS_OPS.register("Slice")
def slice_(c: _Converter, node) -> None:
    src = node.input[0]
    rank, shape = c.rank(src), c.shapes.get(src) or list(c.consts.get(src, np.zeros(0)).shape)
    starts, ends = _const_input(c, node, 1), _const_input(c, node, 2)
    axes = _const_input(c, node, 3, list(range(len(starts))))
    steps = _const_input(c, node, 4, [1] * len(starts))
    layout = "nhwc" if rank == 4 and c.layout(src) == "nhwc" else "plain"
    begin, end, strides = [0] * rank, [0] * rank, [1] * rank
    begin_mask = end_mask = (1 << rank) - 1
    for start, stop, axis, step in zip(starts, ends, axes, steps):
        axis %= rank
        size = shape[axis] if axis < len(shape) else -1
        if size <= 0:
            raise UnsupportedOpError("Slice", node.name, f"slicing axis {axis}, whose size is not known")
        first, last, step = slice(start, stop, step).indices(size)
        tf_axis = AXIS_NCHW_TO_NHWC[axis] if layout == "nhwc" else axis
        begin[tf_axis], strides[tf_axis] = first, step
        begin_mask &= ~(1 << tf_axis)
        if last >= 0:  # a negative stop of a reversed slice means "through index 0": leave end masked
            end[tf_axis] = last
            end_mask &= ~(1 << tf_axis)
    y = c.op("StridedSlice", node.name, [c.tensor(src, layout), c.const(f"{node.name}/begin", np.array(begin)),
                                         c.const(f"{node.name}/end", np.array(end)),
                                         c.const(f"{node.name}/strides", np.array(strides))],
             begin_mask={"i": str(begin_mask)}, end_mask={"i": str(end_mask)}, ellipsis_mask={"i": "0"},
             new_axis_mask={"i": "0"}, shrink_axis_mask={"i": "0"}, Index=a_type("DT_INT32"))
    c.hold(node.output[0], y, layout)


@TFJS_OPS.register("Split")
def split(c: _Converter, node) -> None:
    at = c.attrs(node)
    axis = at.get("axis", 0) % c.rank(node.input[0])
    size = c.shapes.get(node.input[0], [])[axis]
    sizes = _const_input(c, node, 1) or at.get("split")
    if sizes is None:
        count = len(node.output)
        if size <= 0:
            raise UnsupportedOpError("Split", node.name, f"splitting axis {axis}, whose size is not known")
        chunk = -(-size // count)
        sizes = [chunk] * (count - 1) + [size - chunk * (count - 1)]
    layout, tf_axis = _axis_layout(c, node.input[0], axis)
    name = c.op("SplitV", node.name, [c.tensor(node.input[0], layout), c.const(f"{node.name}/sizes", np.array(sizes)),
                                      c.const(f"{node.name}/axis", np.array(tf_axis))],
                num_split={"i": str(len(sizes))}, Tlen=a_type("DT_INT32"))
    for i, out in enumerate(node.output):
        if out:
            c.hold(out, f"{name}:{i}" if i else name, layout)


@TFJS_OPS.register("Concat")
def concat(c: _Converter, node) -> None:
    rank = c.rank(node.output[0]) or c.rank(node.input[0])
    axis = c.attrs(node)["axis"] % rank
    layout = "nhwc" if rank == 4 and any(c.layout(n) == "nhwc" for n in node.input if n in c.held) else "plain"
    inputs = []
    for n in node.input:
        if n in c.held:
            inputs.append(c.tensor(n, layout))
            continue
        value = c.consts[n]
        if layout == "nhwc":
            value = value.transpose(NCHW_TO_NHWC)
        inputs.append(c.const(f"{node.name}/{len(inputs)}", value.astype(np.float32 if c.tf_dtype(node.output[0])
                                                                          == "DT_FLOAT" else np.int32)))
    tf_axis = AXIS_NCHW_TO_NHWC[axis] if layout == "nhwc" else axis
    y = c.op("ConcatV2", node.name, [*inputs, c.const(f"{node.name}/axis", np.array(tf_axis))],
             N={"i": str(len(inputs))}, Tidx=a_type("DT_INT32"))
    c.hold(node.output[0], y, layout)


@TFJS_OPS.register("Gather")
def gather(c: _Converter, node) -> None:
    data, indices = node.input[:2]
    rank = c.rank(data)
    axis = c.attrs(node).get("axis", 0) % rank
    if data in c.plan_weights and axis == 0 and indices not in c.consts:
        _int8_rows(c, node, data, c.tensor(indices, "plain"))
        return
    if data in c.consts:  # an embedding table looked up by computed ids
        table = c.consts[data]
        x = c.const(f"{node.name}/table", table.astype(np.int32 if table.dtype.kind in "iu" else np.float32))
        layout, tf_axis = "plain", axis
    else:
        layout, tf_axis = "plain", axis
        x = c.tensor(data, "plain")
    if indices in c.consts:
        size = c.shapes.get(data, [-1] * rank)[axis] if data not in c.consts else c.consts[data].shape[axis]
        idx = c.consts[indices].astype(np.int64)
        idx = np.where(idx < 0, idx + size, idx) if size > 0 else idx
        idx_name = c.const(f"{node.name}/indices", idx.astype(np.int32))
    else:
        idx_name = c.tensor(indices, "plain")
    y = c.op("GatherV2", node.name, [x, idx_name, c.const(f"{node.name}/axis", np.array(tf_axis))],
             batch_dims={"i": "0"}, Tindices=a_type("DT_INT32"), Taxis=a_type("DT_INT32"))
    c.hold(node.output[0], y, layout)


def _int8_rows(c, node, data: str, ids: str) -> None:
    """A planned embedding table: its int8 rows (TF.js's uint8 format) and a float scale per row,
    both looked up by the ids, then multiplied: only the returned rows are scaled."""
    params = c.plan_weights[data]
    scales = params.scale_array()
    q = qmath.quantize_rows(c.consts[data], scales).astype(np.float32)
    rows = c.const(f"{node.name}/table", q, "int8", scale=1.0, min=-128.0)
    row_scales = c.const(f"{node.name}/row_scale", scales.reshape(-1, 1))
    c.graph.planned[data] = {"const": rows, "axis": 0, "scale_const": row_scales}

    def lookup(table: str, tag: str) -> str:
        return c.op("GatherV2", f"{node.name}/{tag}", [table, ids, c.const(f"{node.name}/{tag}_axis", np.array(0))],
                    batch_dims={"i": "0"}, Tindices=a_type("DT_INT32"), Taxis=a_type("DT_INT32"))

    y = c.op("Mul", node.name, [lookup(rows, "rows"), lookup(row_scales, "scales")])
    c.hold(node.output[0], y, "plain")


@TFJS_OPS.register("GatherND")
def gather_nd(c: _Converter, node) -> None:
    if c.attrs(node).get("batch_dims", 0):
        raise UnsupportedOpError("GatherND", node.name, "batch_dims > 0")
    idx = c.consts[node.input[1]].astype(np.int32) if node.input[1] in c.consts else None
    indices = c.const(f"{node.name}/indices", idx) if idx is not None else c.tensor(node.input[1], "plain")
    y = c.op("GatherNd", node.name, [c.tensor(node.input[0], "plain"), indices], Tindices=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


@TFJS_OPS.register("Expand")
def expand(c: _Converter, node) -> None:
    shape = _out_shape(c, node)
    if shape[0] < 0:
        raise UnsupportedOpError("Expand", node.name, "broadcasting to an unknown batch size")
    y = c.op("BroadcastTo", node.name, [c.tensor(node.input[0], "plain"), c.const(f"{node.name}/shape", np.array(shape))],
             Tidx=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


@TFJS_OPS.register("Tile")
def tile(c: _Converter, node) -> None:
    reps = _const_input(c, node, 1)
    y = c.op("Tile", node.name, [c.tensor(node.input[0], "plain"), c.const(f"{node.name}/reps", np.array(reps))],
             Tmultiples=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


@TFJS_OPS.register("Pad")
def pad(c: _Converter, node) -> None:
    at = c.attrs(node)
    mode = at.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect", "edge"):
        raise UnsupportedOpError("Pad", node.name, f"pad mode '{mode}' (constant, reflect and edge only)")
    pads = _const_input(c, node, 1) if len(node.input) > 1 else list(at["pads"])
    value = float(c.constant(node.input[2], node)) if len(node.input) > 2 and node.input[2] else 0.0
    rank = c.rank(node.input[0])
    axes = _const_input(c, node, 3, list(range(rank)))
    pairs = np.zeros((rank, 2), np.int64)
    for i, axis in enumerate(axes):
        pairs[axis % rank] = (pads[i], pads[i + len(axes)])
    layout = c.layout(node.input[0]) if rank == 4 else "plain"
    if layout == "nhwc":
        pairs = pairs[list(NCHW_TO_NHWC)]
    inputs = [c.tensor(node.input[0], layout), c.const(f"{node.name}/paddings", pairs)]
    if mode == "edge":
        y = _edge_pad(c, node, inputs[0], pairs)
    elif mode == "reflect":
        y = c.op("MirrorPad", node.name, inputs, mode=a_str("REFLECT"), Tpaddings=a_type("DT_INT32"))
    else:
        if value:
            inputs.append(c.const(f"{node.name}/value", np.array(value, np.float32)))
        y = c.op("PadV2" if value else "Pad", node.name, inputs, Tpaddings=a_type("DT_INT32"))
    c.hold(node.output[0], y, layout)


def _edge_pad(c: _Converter, node, x: str, pairs: np.ndarray) -> str:
    """Edge padding (TF.js's MirrorPad has no such mode): per padded axis, the first and last slices
    tiled and concatenated around the tensor."""
    rank = len(pairs)
    for axis, (before, after) in enumerate(pairs):
        if not before and not after:
            continue
        tag = f"{node.name}/axis{axis}"
        parts = []
        for side, count in (("first", before), ("last", after)):
            if not count:
                continue
            begin = np.zeros(rank, np.int64)
            begin[axis] = 0 if side == "first" else -1
            end = np.zeros(rank, np.int64)
            end[axis] = 1 if side == "first" else 0
            mask = ((1 << rank) - 1) & ~(1 << axis)
            edge = c.op("StridedSlice", f"{tag}/{side}", [x, c.const(f"{tag}/{side}_begin", begin), c.const(
                f"{tag}/{side}_end", end), c.const(f"{tag}/{side}_strides", np.ones(rank, np.int64))],
                begin_mask={"i": str(mask)}, end_mask={"i": str(mask | (1 << axis) if side == "last" else mask)},
                ellipsis_mask={"i": "0"}, new_axis_mask={"i": "0"}, shrink_axis_mask={"i": "0"}, Index=a_type("DT_INT32"))
            reps = np.ones(rank, np.int64)
            reps[axis] = count
            parts.append((side, c.op("Tile", f"{tag}/{side}_tiled", [edge, c.const(f"{tag}/{side}_reps", reps)],
                                     Tmultiples=a_type("DT_INT32"))))
        pieces = [t for side, t in parts if side == "first"] + [x] + [t for side, t in parts if side == "last"]
        x = c.op("ConcatV2", tag if axis < rank - 1 else node.name, [*pieces, c.const(f"{tag}/concat_axis", np.array(axis))],
                 N={"i": str(len(pieces))}, Tidx=a_type("DT_INT32"))
    return x


@TFJS_OPS.register("Gemm")
@TFJS_OPS.register("MatMul")
def matmul(c: _Converter, node) -> None:
    """x @ W with a constant 2-D weight: MatMul (fused with its bias), on [rows, features] (a
    higher-rank x is flattened to rows and back); two computed operands: BatchMatMulV2."""
    at = c.attrs(node)
    a, b = node.input[:2]
    if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0:
        raise UnsupportedOpError(node.op_type, node.name, "TF.js export supports Gemm with transA = 0, alpha = 1")
    trans_b = at.get("transB", 0) if node.op_type == "Gemm" else 0
    if b not in c.consts or c.consts[b].ndim != 2:
        if a in c.consts or node.op_type == "Gemm":
            raise UnsupportedOpError(node.op_type, node.name, "TF.js export needs a computed left operand")
        y = c.op("BatchMatMulV2", node.name, [c.tensor(a, "plain"), _operand(c, node, b)],
                 adj_x={"b": False}, adj_y={"b": False})
        c.hold(node.output[0], y, "plain")
        return
    to_tf = (lambda w: w.T) if trans_b else (lambda w: w)
    filt, scales = c.weight(b, to_tf, 0 if trans_b else 1, f"{node.name}/weight", node)
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = c.constant(node.input[2], node).reshape(-1) * np.float32(at.get("beta", 1.0))
    x, rank = c.tensor(a, "plain"), c.rank(a)
    if rank > 2:
        shape = _out_shape(c, node)
        x = c.op("Reshape", f"{node.name}/rows", [x, c.const(f"{node.name}/rows_shape", np.array([-1, c.shapes[a][-1]]))],
                 Tshape=a_type("DT_INT32"))
    y = c.op("MatMul", node.name if rank <= 2 else f"{node.name}/matmul", [x, filt],
             transpose_a={"b": False}, transpose_b={"b": False})
    y = _bias_and_scale(c, node, y, bias, scales)
    if rank > 2:
        y = c.op("Reshape", node.name, [y, c.const(f"{node.name}/shape", np.array(shape))], Tshape=a_type("DT_INT32"))
    c.hold(node.output[0], y, "plain")


def _operand(c: _Converter, node, name: str) -> str:
    if name in c.consts:
        return c.const(f"{node.name}/b", c.consts[name].astype(np.float32))
    return c.tensor(name, "plain")


@TFJS_OPS.register("Softmax")
@TFJS_OPS.register("LogSoftmax")
def softmax(c: _Converter, node) -> None:
    rank = c.rank(node.input[0])
    opset = next((o.version for o in c.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    axis = c.attrs(node).get("axis", -1 if opset >= 13 else 1) % rank
    if opset < 13 and axis != rank - 1:
        raise UnsupportedOpError(node.op_type, node.name, "opset < 13 softmax over flattened trailing axes")
    tf_op = "Softmax" if node.op_type == "Softmax" else "LogSoftmax"
    layout, tf_axis = _axis_layout(c, node.input[0], axis)
    x = c.tensor(node.input[0], layout)
    if tf_axis == rank - 1:
        c.hold(node.output[0], c.op(tf_op, node.name, [x]), layout)
        return
    perm = list(range(rank))
    perm[tf_axis], perm[-1] = perm[-1], perm[tf_axis]  # a swap is its own inverse
    perm_const = c.const(f"{node.name}/perm", np.array(perm))
    moved = c.op("Transpose", f"{node.name}/to_last", [x, perm_const], Tperm=a_type("DT_INT32"))
    y = c.op(tf_op, f"{node.name}/last", [moved])
    c.hold(node.output[0], c.op("Transpose", node.name, [y, perm_const], Tperm=a_type("DT_INT32")), layout)


@TFJS_OPS.register("Resize")
@TFJS_OPS.register("Upsample")
def resize(c: _Converter, node) -> None:
    at = c.attrs(node)
    text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in at.items()}
    mode = text.get("mode", "nearest")
    transform = text.get("coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" else "asymmetric")
    out = c.shapes.get(node.output[0], [])
    if c.rank(node.input[0]) != 4 or len(out) != 4 or min(out[2:]) <= 0:
        raise UnsupportedOpError(node.op_type, node.name, "TF.js export resizes images [N, C, H, W] to a known size")
    in_hw = c.shapes[node.input[0]][2:]
    if mode == "nearest":
        exact = all(o % i == 0 for o, i in zip(out[2:], in_hw))  # integer factors: every rule picks the same pixel
        if not exact and (transform, text.get("nearest_mode", "round_prefer_floor")) != ("asymmetric", "floor"):
            raise UnsupportedOpError(node.op_type, node.name, f"nearest resize with '{transform}' coordinates "
                                     "and a non-integer scale")
        tf_op, align, half = "ResizeNearestNeighbor", False, False
    elif mode in ("linear", "bilinear"):
        tf_op = "ResizeBilinear"
        if transform == "pytorch_half_pixel" and min(out[2:]) > 1:
            transform = "half_pixel"
        align, half = transform == "align_corners", transform == "half_pixel"
        if transform not in ("align_corners", "half_pixel", "asymmetric"):
            raise UnsupportedOpError(node.op_type, node.name, f"linear resize with '{transform}' coordinates")
    else:
        raise UnsupportedOpError(node.op_type, node.name, f"resize mode '{mode}'")
    y = c.op(tf_op, node.name, [c.tensor(node.input[0], "nhwc"), c.const(f"{node.name}/size", np.array(out[2:]))],
             align_corners={"b": align}, half_pixel_centers={"b": half})
    c.hold(node.output[0], y, "nhwc")


@TFJS_OPS.register("ConvTranspose")
def conv_transpose(c: _Converter, node) -> None:
    """Conv2DBackpropInput at the full (unpadded) size, then the ONNX pads cropped off."""
    at = c.attrs(node)
    w = c.constant(node.input[1], node)
    if w.ndim != 4 or at.get("group", 1) != 1 or any(d != 1 for d in at.get("dilations", [1, 1])):
        raise UnsupportedOpError("ConvTranspose", node.name, "TF.js export supports 2-D, ungrouped, undilated "
                                 "transposed convolutions")
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or at.get("output_shape"):
        raise UnsupportedOpError("ConvTranspose", node.name, "auto_pad / output_shape attributes")
    kh, kw = w.shape[2:]
    strides = at.get("strides", [1, 1])
    pads = at.get("pads", [0, 0, 0, 0])
    extra = at.get("output_padding", [0, 0])
    in_shape = c.shapes.get(node.input[0], [])
    if len(in_shape) != 4 or min(in_shape[2:]) <= 0:
        raise UnsupportedOpError("ConvTranspose", node.name, "TF.js export needs a known input height and width")
    full = [(in_shape[2 + i] - 1) * strides[i] + (kh, kw)[i] + extra[i] for i in range(2)]
    filt, scales = c.weight(node.input[1], lambda a: a.transpose(2, 3, 1, 0), 1, f"{node.name}/filter", node)
    x = c.tensor(node.input[0], "nhwc")
    rest = c.const(f"{node.name}/out_hwc", np.array([*full, w.shape[1]]))
    if in_shape[0] > 0:
        size = c.const(f"{node.name}/out_shape", np.array([in_shape[0], *full, w.shape[1]]))
    else:  # batch from the input at run time
        batch = c.op("StridedSlice", f"{node.name}/batch", [
            c.op("Shape", f"{node.name}/in_shape", [x], out_type=a_type("DT_INT32")),
            c.const(f"{node.name}/b0", np.array([0])), c.const(f"{node.name}/b1", np.array([1])),
            c.const(f"{node.name}/b_step", np.array([1]))], begin_mask={"i": "0"}, end_mask={"i": "0"},
            ellipsis_mask={"i": "0"}, new_axis_mask={"i": "0"}, shrink_axis_mask={"i": "0"}, Index=a_type("DT_INT32"))
        size = c.op("ConcatV2", f"{node.name}/out_shape", [batch, rest, c.const(f"{node.name}/axis0", np.array(0))],
                    N={"i": "2"}, Tidx=a_type("DT_INT32"))
    y = c.op("Conv2DBackpropInput", f"{node.name}/full" if any(pads) else node.name, [size, filt, x],
             strides=a_ints([1, *strides, 1]), padding=a_str("VALID"), data_format=a_str("NHWC"),
             dilations=a_ints([1, 1, 1, 1]))
    if any(pads):
        y = c.op("StridedSlice", node.name, [
            y, c.const(f"{node.name}/begin", np.array([0, pads[0], pads[1], 0])),
            c.const(f"{node.name}/end", np.array([0, full[0] - pads[2], full[1] - pads[3], 0])),
            c.const(f"{node.name}/strides", np.array([1, 1, 1, 1]))], begin_mask={"i": "9"}, end_mask={"i": "9"},
            ellipsis_mask={"i": "0"}, new_axis_mask={"i": "0"}, shrink_axis_mask={"i": "0"}, Index=a_type("DT_INT32"))
    bias = c.constant(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
    c.hold(node.output[0], _bias_and_scale(c, node, y, bias, scales), "nhwc")


