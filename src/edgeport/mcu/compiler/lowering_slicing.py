"""Slicing ops -> C kernel calls: STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, GATHER (int8, as LiteRT's
reference kernels compute them).

One op family of the lowerings (the shared parts are in `lowering`); the `LOWERINGS` table at
the end goes into the registry built in `lowerings`.

These ops move int8 values without changing them. LiteRT's kernels (strided_slice.cc, slice.cc,
split.cc, split_v.cc, gather.cc) copy the bytes and never look at the quantization, so an output
quantized differently from its input gets the same bytes here too. Every begin, end, stride,
size, axis and index must be constant: the generator turns each op into a window of its input
(`Window`: a start, counts and strides, found with LiteRT's index arithmetic) and checks the
shape LiteRT computes against the model's. A window that is one contiguous range becomes
`ep_copy_s8` from an offset, or no code at all when it starts at the input's first byte (the
output then shares the input's bytes, as a RESHAPE's does); any other window runs `ep_slice_s8`.
GATHER with a table of indices runs `ep_gather_s8`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeport.mcu.compiler.lowering import (
    MAX_DIMS,
    CStruct,
    Lower,
    Lowering,
    Ref,
    Step,
    _require_int8,
    _strides,
    _tensors,
    unsupported,
)
from edgeport.mcu.compiler.lowering_elementwise import coalesce_dims
from edgeport.mcu.compiler.tflite_ir import Graph, Op

INDEX_TYPES = ("int16", "int32", "int64")  # the GATHER positions LiteRT takes
ARITY = {"STRIDED_SLICE": 4, "SLICE": 3, "SPLIT": 2, "SPLIT_V": 3, "GATHER": 2}  # inputs LiteRT's Prepare requires


@dataclass(frozen=True)
class Window:
    """Output element (i_0, ..., i_n) = input[start + sum_d i_d * strides[d]] (element strides)."""

    start: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _ints(op: Op, graph: Graph, index: int, what: str, dtypes=INDEX_TYPES) -> np.ndarray:
    """A constant integer input of `op` as int64 values."""
    tensor = graph.tensors[index] if index >= 0 else None
    if tensor is None or not tensor.is_constant:
        raise unsupported(op, graph, f"{what} not constant")
    if tensor.dtype not in dtypes:
        raise unsupported(op, graph, f"{tensor.dtype} {what}")
    return np.ravel(tensor.data).astype(np.int64)


def _check_arity(op: Op, graph: Graph) -> None:
    outputs_ok = bool(op.outputs) if op.name in ("SPLIT", "SPLIT_V") else len(op.outputs) == 1
    if len(op.inputs) != ARITY[op.name] or not outputs_ok:
        raise unsupported(op, graph, f"{len(op.inputs)} inputs and {len(op.outputs)} outputs")


def _axis(op: Op, graph: Graph, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise unsupported(op, graph, f"axis {axis} of a {rank}-D input")
    return axis % rank


def _emit(op: Op, graph: Graph, ctx: Lowering, source: int, target: int, window: Window, name: str) -> tuple:
    """C that writes `window` of tensor `source` into tensor `target`: (code parts, structs)."""
    dims, (steps,) = coalesce_dims(list(window.shape), list(window.strides))
    label = graph.tensors[target].label
    if len(dims) == 1 and (steps[0] == 1 or dims[0] == 1):  # one contiguous range
        if window.start == 0 and target not in ctx.outputs:
            ctx.aliases[target] = source
            return [f"/* {label}: the input's first {dims[0]} values, sharing its bytes */"], []
        offset = f" + {window.start}" if window.start else ""
        return [f"ep_copy_s8({dims[0]}, ", ctx.operand(source), f"{offset}, ", Ref(target), ");"], []
    if len(dims) > MAX_DIMS:
        raise unsupported(op, graph, f"a window over {len(dims)} dimensions (at most {MAX_DIMS})")
    fields = {"dims": len(dims), "shape": dims, "strides": steps, "start": window.start}
    return [f"ep_slice_s8(&{name}, ", ctx.operand(source), ", ", Ref(target), ");"], \
        [CStruct("ep_slice_params", name, fields)]


def _check_shape(op: Op, graph: Graph, target: int, shape) -> None:
    """The model's output shape must be the one LiteRT computes (LiteRT would resize it) and not empty."""
    declared = tuple(graph.tensors[target].shape)
    if declared != tuple(int(d) for d in shape):
        raise unsupported(op, graph, f"output shape {list(declared)}, LiteRT computes {[int(d) for d in shape]}")
    if 0 in declared:
        raise unsupported(op, graph, "empty output")


# ------------------------------------------------------------------ STRIDED_SLICE

def strided_slice_window(shape, begin, end, strides, options: dict) -> tuple[Window, tuple[int, ...]]:
    """What LiteRT's STRIDED_SLICE reads (strided_slice.cc BuildStridedSliceParams, then the
    reference StartForAxis / EndForAxis and loop of reference/strided_slice.h).

    Args:
        shape: the input's shape.
        begin, end, strides: the constant index tensors' values (one per spec entry).
        options: StridedSliceOptions as `tflite_ir` reads them (`begin_mask`, `end_mask`,
            `ellipsis_mask`, `new_axis_mask`, `shrink_axis_mask`, `offset`).

    Returns:
        The window, in the order LiteRT writes the output, and the output shape it computes.

    Raises:
        ValueError: what LiteRT refuses (stride 0), and slices it would leave partly unwritten or
            size otherwise than it writes them (a shrunk axis with nothing to take; `offset` with
            masks or clamped ranges).
    """
    mask = {key: int(options.get(f"{key}_mask", 0)) for key in ("begin", "end", "ellipsis", "new_axis", "shrink_axis")}
    rank, count = len(shape), len(begin)
    if not len(end) == len(strides) == count or count > 31:
        raise ValueError(f"{count} begins, {len(end)} ends, {len(strides)} strides")
    added = sum(1 for i in range(count) if not _bit(mask["ellipsis"], i) and _bit(mask["new_axis"], i))
    dims = rank + added
    # the ellipsis expands over the dimensions the spec leaves out; the new axes after it shift
    ellipsis, new_axes, ellipsis_start, expanded, i = set(), set(), dims, 0, 0
    while i < dims:
        if _bit(mask["ellipsis"], i):
            ellipsis_start, stop = i, max(i + 1, min(i + 1 + added + rank - count, dims))
            expanded = stop - ellipsis_start - 1
            ellipsis.update(range(i, stop))
            i = stop
            continue
        if _bit(mask["new_axis"], i - expanded):
            new_axes.add(i)
        i += 1
    axes = []  # per dimension of the input with its new axes: start, stop, step, size, shrunk
    added_ellipsis = added_axes = 0
    for i in range(dims):
        first = last = None  # None: under the begin / end mask
        step, shrunk, size = 1, False, 1
        if i in ellipsis:
            added_ellipsis = max(0, i - ellipsis_start)
            size = shape[i - added_axes]
        elif i in new_axes:
            first, last = 0, 1
            added_axes += 1
        elif i >= count + expanded:
            size = shape[i - added_axes]
        else:
            k = i - added_ellipsis
            step, shrunk, size = int(strides[k]), _bit(mask["shrink_axis"], k), shape[i - added_axes]
            first = None if _bit(mask["begin"], k) else int(begin[k])
            last = None if _bit(mask["end"], k) else int(end[k])
        if step == 0:
            raise ValueError("stride 0")
        start = _clamp_index(first, size, step, 0 if step > 0 else size - 1)
        if shrunk:
            stop = start if start >= size else start + 1
        elif last is not None and options.get("offset"):
            stop = _clamp_index(last + start, size, step, None)
        else:
            stop = _clamp_index(last, size, step, size if step > 0 else -1)
        axes.append((start, stop, step, size, shrunk))
    counts = [max(0, -(-(stop - start) // step)) for start, stop, step, _, _ in axes]
    if any(a[4] and c != 1 for a, c in zip(axes, counts)):
        raise ValueError("a shrunk axis with nothing to take (LiteRT writes no value)")
    shape_out = tuple(c for a, c in zip(axes, counts) if not a[4])
    if options.get("offset"):
        _check_offset_shape(mask, rank, end, axes, shape_out)
    in_strides = _strides([a[3] for a in axes])
    window = Window(sum(a[0] * t for a, t in zip(axes, in_strides)), tuple(counts),
                    tuple(a[2] * t for a, t in zip(axes, in_strides)))
    return window, shape_out


def _check_offset_shape(mask: dict, rank: int, end, axes: list, shape: tuple) -> None:
    """With `offset` (each end a length from its begin) LiteRT sizes the output from the raw end
    values alone and reads one per dimension: refuse what would make it read past them or size the
    output otherwise than it writes it (a mask, a clamped range)."""
    if mask["ellipsis"] or mask["new_axis"] or len(end) != rank:
        raise ValueError("offset with an ellipsis, a new axis or dimensions left out (LiteRT reads past its ends)")
    sized = []
    for length, (_, _, step, _, shrunk) in zip(end, axes):
        length = int(length)
        if shrunk:
            continue
        if (length < 0) != (step < 0):
            sized.append(0)
        elif step < 0:
            sized.append((-length - 1) // -step + 1)  # C's (length + 1) / step + 1, both <= 0
        else:
            sized.append(0 if length == 0 else (length - 1) // step + 1)
    if tuple(sized) != shape:
        raise ValueError(f"offset slice: LiteRT sizes the output {sized} but takes {list(shape)} values")


def _bit(mask: int, i: int) -> bool:
    return bool(mask >> i & 1)


def _clamp_index(index: int | None, size: int, step: int, masked: int | None) -> int:
    """A begin or end index as LiteRT reads it: `masked` under its mask, negative counted from the
    end, clamped to [0, size] going forward and to [-1, size - 1] going backward."""
    if index is None:
        return masked
    index += size if index < 0 else 0
    return min(max(index, 0), size) if step > 0 else min(max(index, -1), size - 1)


def lower_strided_slice(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """STRIDED_SLICE with constant begin, end and strides: its window (`strided_slice_window`)."""
    _check_arity(op, graph)
    (inp, *_), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp, out)
    if not inp.shape:
        raise unsupported(op, graph, "0-D input")
    begin, end, strides = (_ints(op, graph, i, what, ("int32",)) for i, what in
                           zip(op.inputs[1:4], ("begin", "end", "strides")))
    try:
        window, shape = strided_slice_window(inp.shape, begin, end, strides, op.options)
    except ValueError as exc:
        raise unsupported(op, graph, str(exc)) from None
    _check_shape(op, graph, op.outputs[0], shape)
    code, structs = _emit(op, graph, ctx, op.inputs[0], op.outputs[0], window, f"op{op.index}")
    return Step(op, code, structs)


# ------------------------------------------------------------------ SLICE

def lower_slice(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """SLICE with constant begin and size (-1: to the end) inside the input: its window."""
    _check_arity(op, graph)
    (inp, *_), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp, out)
    begin, size = (_ints(op, graph, i, what, ("int32", "int64")) for i, what in zip(op.inputs[1:3], ("begin", "size")))
    if graph.tensors[op.inputs[1]].dtype != graph.tensors[op.inputs[2]].dtype:  # LiteRT reads both as begin's type
        raise unsupported(op, graph, "begin and size of different types")
    if not len(begin) == len(size) == len(inp.shape) > 0:
        raise unsupported(op, graph, f"{len(begin)} begins and {len(size)} sizes for a {len(inp.shape)}-D input")
    size = np.where(size == -1, np.asarray(inp.shape) - begin, size)
    if np.any(begin < 0) or np.any(size < 0) or np.any(begin + size > np.asarray(inp.shape)):
        raise unsupported(op, graph, f"begin {begin.tolist()} size {size.tolist()} outside the input {list(inp.shape)}")
    _check_shape(op, graph, op.outputs[0], size)
    strides = _strides(inp.shape)
    window = Window(int(np.dot(begin, strides)), tuple(int(s) for s in size), tuple(strides))
    code, structs = _emit(op, graph, ctx, op.inputs[0], op.outputs[0], window, f"op{op.index}")
    return Step(op, code, structs)


# ------------------------------------------------------------------ SPLIT, SPLIT_V

def _split_sizes(op: Op, graph: Graph, dim: int, parts: int) -> list[int]:
    """Each output's extent along the split axis, as split.cc / split_v.cc compute them."""
    if op.name == "SPLIT":
        if dim % parts:
            raise unsupported(op, graph, f"{dim} values do not split evenly in {parts}")
        return [dim // parts] * parts
    sizes = _ints(op, graph, op.inputs[1], "size_splits", ("int32", "int64")).tolist()
    if len(sizes) != parts or sizes.count(-1) > 1 or any(s < -1 for s in sizes):
        raise unsupported(op, graph, f"size_splits {sizes} for {parts} outputs")
    rest = dim - sum(s for s in sizes if s != -1)
    if (-1 in sizes and rest < 0) or (-1 not in sizes and rest != 0):
        raise unsupported(op, graph, f"size_splits {sizes} do not add up to {dim}")
    return [rest if s == -1 else s for s in sizes]


def lower_split(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """SPLIT (axis, input) and SPLIT_V (input, size_splits, axis): a window per output; an output no
    op reads is not written (it shares the input's bytes, taking no arena)."""
    _check_arity(op, graph)
    source, axis_index = (op.inputs[1], op.inputs[0]) if op.name == "SPLIT" else (op.inputs[0], op.inputs[2])
    inp = graph.tensors[source]
    _, outputs = _tensors(op, graph)
    _require_int8(op, graph, inp, *outputs)
    if op.options.get("num_splits", len(outputs)) != len(outputs):
        raise unsupported(op, graph, f"num_splits {op.options['num_splits']} for {len(outputs)} outputs")
    axis_values = _ints(op, graph, axis_index, "axis", ("int32",))
    if axis_values.size != 1:
        raise unsupported(op, graph, f"{axis_values.size} axis values")
    axis = _axis(op, graph, int(axis_values[0]), len(inp.shape))
    sizes = _split_sizes(op, graph, inp.shape[axis], len(outputs))
    outer = int(np.prod(inp.shape[:axis], dtype=np.int64))
    inner = int(np.prod(inp.shape[axis + 1:], dtype=np.int64))
    code, structs, first = [], [], 0
    for k, (target, size) in enumerate(zip(op.outputs, sizes)):
        _check_shape(op, graph, target, (*inp.shape[:axis], size, *inp.shape[axis + 1:]))
        if not graph.consumers(target) and target not in ctx.outputs:
            ctx.aliases[target] = source
            part, more = [f"/* {graph.tensors[target].label}: read by no op, not written */"], []
        else:
            window = Window(first * inner, (outer, size * inner), (inp.shape[axis] * inner, 1))
            part, more = _emit(op, graph, ctx, source, target, window, f"op{op.index}_{k}")
        code += (["\n    "] if code else []) + part
        structs += more
        first += size
    return Step(op, code, structs)


# ------------------------------------------------------------------ GATHER

def lower_gather(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """GATHER with constant indices (no edgeport kernel computes an int32 tensor): a window when the
    indices are evenly spaced (repeats of one index included), else `ep_gather_s8` with the table."""
    _check_arity(op, graph)
    (params, indices), (out,) = _tensors(op, graph)
    _require_int8(op, graph, params, out)
    if not params.shape:
        raise unsupported(op, graph, "0-D input")
    axis = _axis(op, graph, int(op.options.get("axis", 0)), len(params.shape))
    if op.options.get("batch_dims", 0) != 0:
        raise unsupported(op, graph, f"batch_dims {op.options['batch_dims']} (only 0)")
    if not indices.is_constant:
        raise unsupported(op, graph, "indices computed by the graph (only constant indices)")
    values = _ints(op, graph, op.inputs[1], "indices")
    size = params.shape[axis]
    if values.size and (values.min() < 0 or values.max() >= size):  # LiteRT fails at invoke
        raise unsupported(op, graph, f"index {int(values[(values < 0) | (values >= size)][0])} outside [0, {size})")
    _check_shape(op, graph, op.outputs[0], (*params.shape[:axis], *indices.shape, *params.shape[axis + 1:]))
    outer = int(np.prod(params.shape[:axis], dtype=np.int64))
    inner = int(np.prod(params.shape[axis + 1:], dtype=np.int64))
    name = f"op{op.index}"
    spacing = np.unique(np.diff(values))
    if spacing.size <= 1:  # values[0] + i * step
        step = int(spacing[0]) if spacing.size else 0
        window = Window(int(values[0]) * inner, (outer, values.size, inner), (size * inner, step * inner, 1))
        code, structs = _emit(op, graph, ctx, op.inputs[0], op.outputs[0], window, name)
        return Step(op, code, structs)
    table = ctx.array(f"{name}_indices", "int32_t", values.astype(np.int32),
                      f"GATHER indices along axis {axis} of {graph.tensors[op.inputs[0]].label}")
    fields = {"outer": outer, "axis_size": size, "count": int(values.size), "inner": inner}
    return Step(op, [f"ep_gather_s8(&{name}, ", ctx.operand(op.inputs[0]), f", {table}, ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_gather_params", name, fields)])


# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {
    "STRIDED_SLICE": lower_strided_slice,
    "SLICE": lower_slice,
    "SPLIT": lower_split, "SPLIT_V": lower_split,
    "GATHER": lower_gather,
}
