"""int8 .tflite graphs of the slicing ops (STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, GATHER), built with
`tflite_graphs.GraphBuilder`: one int8 input, one int8 output. Each op's outputs are flattened
(RESHAPE) and joined by CONCATENATION, in another order than they were made, into the one output.

STRIDED_SLICE is written the way TensorFlow writes a Python subscript (`strided_slice(g, x, spec)`
with `spec` a tuple of slices, ints, `...` and `None`): begin / end / strides and the begin, end,
shrink-axis, ellipsis and new-axis masks, and NumPy's indexing gives the output shape.
"""

from __future__ import annotations

import numpy as np

from testmodels.tflite_graphs import GraphBuilder, schema


# StridedSliceOptions: edgeport's reader's names -> the schema's
OPTION_FIELDS = {"begin_mask": "beginMask", "end_mask": "endMask", "shrink_axis_mask": "shrinkAxisMask",
                 "ellipsis_mask": "ellipsisMask", "new_axis_mask": "newAxisMask", "offset": "offset"}


def slice_spec(spec: tuple, offset: bool = False) -> tuple[list[int], list[int], list[int], dict]:
    """A Python subscript as TensorFlow writes it for STRIDED_SLICE: begin, end, strides and the
    options (snake_case, as edgeport's reader gives them). With `offset`, each end is a length."""
    begin, end, strides = [], [], []
    options = {**dict.fromkeys(OPTION_FIELDS, 0), "offset": offset}
    for i, item in enumerate(spec):
        bit = 1 << i
        if isinstance(item, slice):
            first = 0 if item.start is None else item.start
            last = 0 if item.stop is None else item.stop - (first if offset else 0)
            entry = (first, last, 1 if item.step is None else item.step)
            options["begin_mask"] |= bit if item.start is None else 0
            options["end_mask"] |= bit if item.stop is None else 0
        elif item is Ellipsis or item is None:
            entry = (0, 0, 1)
            options["ellipsis_mask" if item is Ellipsis else "new_axis_mask"] |= bit
        else:  # an index: its axis shrunk
            entry = (item, 1 if offset else item + 1, 1)
            options["shrink_axis_mask"] |= bit
        for values, value in zip((begin, end, strides), entry):
            values.append(value)
    return begin, end, strides, options


def strided_slice(g: GraphBuilder, x: int, spec: tuple, quantization=None, offset: bool = False) -> int:
    """x[spec] as STRIDED_SLICE (`slice_spec`); the output quantized as `x`, or with `quantization`
    (scale, zero point)."""
    begin, end, strides, options = slice_spec(spec, offset)
    shape = np.empty(g.shape(x), np.int8)[spec].shape
    scale, zero_point = quantization or (g.scale(x), g.zero_point(x))
    y = g.activation(f"strided_slice{len(g.tensors)}", shape, scale, zero_point)
    opts = schema.StridedSliceOptionsT()
    for key, field in OPTION_FIELDS.items():
        setattr(opts, field, options[key])
    n = len(g.tensors)
    tensors = [g.const(f"{what}{n}", np.array(v, np.int32)) for what, v in (("begin", begin), ("end", end),
                                                                           ("strides", strides))]
    g.op("STRIDED_SLICE", [x, *tensors], [y], opts)
    return y


def slice_(g: GraphBuilder, x: int, begin, size) -> int:
    """SLICE with constant begin and size (-1: to the end)."""
    shape = tuple(d - b if s == -1 else s for d, b, s in zip(g.shape(x), begin, size))
    y = g.activation(f"slice{len(g.tensors)}", shape, g.scale(x), g.zero_point(x))
    n = len(g.tensors)
    g.op("SLICE", [x, g.const(f"begin{n}", np.array(begin, np.int32)), g.const(f"size{n}", np.array(size, np.int32))],
         [y], schema.SliceOptionsT())
    return y


def split(g: GraphBuilder, x: int, axis: int, parts: int) -> list[int]:
    """SPLIT into `parts` equal outputs along `axis` (may be negative)."""
    shape = list(g.shape(x))
    shape[axis] //= parts
    ys = [g.activation(f"split{len(g.tensors)}", tuple(shape), g.scale(x), g.zero_point(x)) for _ in range(parts)]
    opts = schema.SplitOptionsT()
    opts.numSplits = parts
    g.op("SPLIT", [g.const(f"axis{len(g.tensors)}", np.array([axis], np.int32)), x], ys, opts)
    return ys


def split_v(g: GraphBuilder, x: int, sizes, axis: int) -> list[int]:
    """SPLIT_V into outputs of `sizes` along `axis` (one size may be -1: the rest)."""
    shape = list(g.shape(x))
    rest = shape[axis] - sum(s for s in sizes if s != -1)
    ys = []
    for s in sizes:
        shape[axis] = rest if s == -1 else s
        ys.append(g.activation(f"split_v{len(g.tensors)}", tuple(shape), g.scale(x), g.zero_point(x)))
    opts = schema.SplitVOptionsT()
    opts.numSplits = len(sizes)
    n = len(g.tensors)
    sizes_t = g.const(f"sizes{n}", np.array(sizes, np.int32))
    g.op("SPLIT_V", [x, sizes_t, g.const(f"axis{n}", np.array([axis], np.int32))], ys, opts)
    return ys


def gather(g: GraphBuilder, x: int, indices, axis: int = 0, batch_dims: int = 0, index_type: str = "int32") -> int:
    """GATHER of `x` along `axis` by constant `indices` (stored as `index_type`: int32 or int64)."""
    indices = np.asarray(indices)
    shape = g.shape(x)
    out = (*shape[:axis % len(shape)], *indices.shape[batch_dims:], *shape[axis % len(shape) + 1:])
    positions = g.const(f"indices{len(g.tensors)}", indices.astype(np.int32))
    if index_type == "int64":  # GraphBuilder.const stores int32: retype the tensor and its buffer
        g.tensors[positions].type = schema.TensorType.INT64
        g.buffers[g.tensors[positions].buffer].data = np.frombuffer(indices.astype(np.int64).tobytes(), np.uint8)
    y = g.activation(f"gather{len(g.tensors)}", out, g.scale(x), g.zero_point(x))
    opts = schema.GatherOptionsT()
    opts.axis, opts.batchDims = axis, batch_dims
    g.op("GATHER", [x, positions], [y], opts)
    return y


def join(g: GraphBuilder, xs: list[int]) -> int:
    """The tensors flattened and concatenated (all quantized alike) into one [1, n] tensor."""
    flat = [g.reshape(x, [1, int(np.prod(g.shape(x)))]) for x in xs]
    while len(flat) > 1:
        flat = [g.concatenate(flat[:8], axis=1) if len(flat[:8]) > 1 else flat[0], *flat[8:]]
    return flat[0]


def strided_slice_graph(seed: int = 31) -> bytes:
    """int8 [2, 6, 7, 5] -> STRIDED_SLICE with begin / end masks and stride 2, shrunk axes with a
    reversed axis, an ellipsis with stride -2, a new axis with a negative begin and dimensions left
    out, negative strides from explicit begins past the ends (clamped), a contiguous range (a copy),
    a prefix (shares the input's bytes), an axis shrunk between an ellipsis and a clamped stride 3,
    a new axis after an ellipsis, ends given as lengths (offset), and one output quantized
    differently (LiteRT copies the bytes; a QUANTIZE brings it back) -> joined into int8 [1, n]."""
    g = GraphBuilder(seed)
    x = g.activation("input", (2, 6, 7, 5), 0.05, -3)
    specs = [(slice(None), slice(1, 5), slice(None, None, 2), slice(None)),
             (1, slice(None, None, -1), 2, slice(1, 4)),
             (Ellipsis, slice(None, None, -2)),
             (None, slice(None), slice(-2, None), slice(1, None, 3)),
             (slice(None), slice(5, 0, -2), slice(-1, -8, -3), slice(4, 1, -1)),
             (slice(0, 1), slice(2, 4)),
             (slice(0, 1),),
             (slice(None), slice(-100, 100, 3), 0, Ellipsis),
             (Ellipsis, None, 2)]
    ys = [strided_slice(g, x, spec) for spec in specs]
    ys.append(strided_slice(g, x, (slice(1, 2), slice(4, 0, -2), slice(1, 6), slice(0, 5, 2)), offset=True))
    other = strided_slice(g, x, (slice(None), slice(None), slice(3, 6), slice(None, None, -1)), (0.11, 9))
    ys.append(g.requantize(other, g.scale(x), g.zero_point(x)))
    order = [3, 0, 9, 5, 10, 1, 7, 2, 6, 8, 4]
    return g.build([x], [join(g, [ys[i] for i in order])])


def split_graph(seed: int = 32) -> bytes:
    """int8 [2, 6, 4, 6] -> SPLIT in 3 along the last axis, in 2 along axis -3, in 2 along the batch
    (a prefix sharing the input's bytes and a copied range); SPLIT_V [1, -1, 2] along axis 2 and
    [1, 2, 3] along axis 1 with its middle output unused -> joined in another order."""
    g = GraphBuilder(seed)
    x = g.activation("input", (2, 6, 4, 6), 0.04, 5)
    a = split(g, x, 3, 3)
    b = split(g, x, -3, 2)
    c = split(g, x, 0, 2)
    d = split_v(g, x, [1, -1, 2], 2)
    e = split_v(g, x, [1, 2, 3], 1)
    return g.build([x], [join(g, [a[2], a[0], b[1], c[1], d[2], a[1], d[0], c[0], b[0], e[2], e[0], d[1]])])


def gather_graph(seed: int = 33) -> bytes:
    """int8 [3, 5, 4] -> GATHER along axis 0 with repeated indices, along axis 1 by a 2-D index
    tensor with repeats (both by an index table), along axis -1 by evenly spaced descending int64
    indices, along axis 1 by a scalar, and one index repeated (windows) -> joined."""
    g = GraphBuilder(seed)
    x = g.activation("input", (3, 5, 4), 0.03, 2)
    ys = [gather(g, x, [2, 0, 2, 1], 0),
          gather(g, x, [[4, 0], [1, 4], [3, 3]], 1),
          gather(g, x, [3, 2, 1], -1, index_type="int64"),
          gather(g, x, np.array(2), 1),
          gather(g, x, [1, 1, 1], 0)]
    return g.build([x], [join(g, [ys[1], ys[4], ys[0], ys[3], ys[2]])])


def slicing_graph(seed: int = 34) -> bytes:
    """Every slicing op in one graph: int8 [2, 6, 7, 5] -> STRIDED_SLICE (masks, a shrunk axis,
    stride -2), SLICE (a window, and a -1 size), SPLIT in 7 along axis 2 (4 outputs unused), SPLIT_V [2, -1] along axis
    1, GATHER by an index table and by evenly spaced indices -> joined into int8 [1, n]."""
    g = GraphBuilder(seed)
    x = g.activation("input", (2, 6, 7, 5), 0.05, 4)
    s = strided_slice(g, x, (slice(None), 3, slice(None, None, -2), slice(1, None)))
    t = slice_(g, x, [1, 1, 2, 0], [1, 4, -1, 3])
    u = slice_(g, x, [0, 2, 0, 0], [1, 2, -1, -1])
    a = split(g, x, 2, 7)
    b = split_v(g, x, [2, -1], 1)
    c = gather(g, x, [4, 0, 4, 2], 3)
    d = gather(g, x, [5, 3, 1], 1)
    return g.build([x], [join(g, [c, a[6], s, b[1], a[2], t, d, a[0], b[0], u])])
