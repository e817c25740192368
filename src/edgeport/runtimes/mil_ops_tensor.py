"""NumPy implementations of the MIL tensor ops: slicing, splitting, padding, tiling, gathering,
filling, shapes and the reductions `mil_ops` lacks (see `mil_ops` for the conventions).

Semantics follow coremltools' op definitions (coremltools/converters/mil/mil/ops/defs/iOS15..18);
an input the program leaves out takes the default its definition gives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeport.registry import Registry

TENSOR_OPS: Registry[Callable[..., np.ndarray | tuple[np.ndarray, ...]]] = Registry("MIL op")


def _ints(values) -> list[int]:
    return [int(v) for v in np.atleast_1d(values)]


def _mask(mask, rank: int) -> list[bool]:
    return [False] * rank if mask is None else [bool(m) for m in np.atleast_1d(mask)]


@TENSOR_OPS.register("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    """Python slicing per axis: a masked begin / end is open; a squeezed axis keeps element `begin`
    and is dropped."""
    rank = x.ndim
    begin, end = _ints(begin), _ints(end)
    stride = [1] * rank if stride is None else _ints(stride)
    begin_mask, end_mask, squeeze_mask = _mask(begin_mask, rank), _mask(end_mask, rank), _mask(squeeze_mask, rank)
    index = []
    for axis in range(rank):
        if squeeze_mask[axis]:
            index.append(begin[axis])
            continue
        index.append(slice(None if begin_mask[axis] else begin[axis], None if end_mask[axis] else end[axis],
                           stride[axis]))
    return np.asarray(x[tuple(index)])


@TENSOR_OPS.register("slice_by_size")
def slice_by_size(x, begin, size):
    """`size[i]` elements from `begin[i]`; -1 takes the rest of the axis."""
    index = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(_ints(begin), _ints(size)))
    return np.asarray(x[index])


@TENSOR_OPS.register("split")
def split(x, num_splits=None, split_sizes=None, axis=0):
    axis = int(axis)
    if split_sizes is not None:
        bounds = np.cumsum(_ints(split_sizes))[:-1]
        return tuple(np.split(x, bounds, axis=axis))
    return tuple(np.split(x, int(num_splits), axis=axis))


@TENSOR_OPS.register("tile")
def tile(x, reps):
    return np.tile(x, _ints(reps))


@TENSOR_OPS.register("pad")
def pad(x, pad, mode="constant", constant_val=0.0):  # noqa: A002 - MIL's names
    """`pad` holds (before, after) pairs for the last len(pad) / 2 axes."""
    pairs = np.asarray(_ints(pad)).reshape(-1, 2)
    widths = [(0, 0)] * (x.ndim - len(pairs)) + [tuple(p) for p in pairs]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise NotImplementedError(f"pad mode '{mode}'")


@TENSOR_OPS.register("fill")
def fill(shape, value=0.0):
    return np.full(_ints(shape), value)


@TENSOR_OPS.register("fill_like")
def fill_like(ref_tensor, value=0.0):
    return np.full(np.shape(ref_tensor), value)


@TENSOR_OPS.register("shape")
def shape(x):
    return np.asarray(np.shape(x), dtype=np.int32)


@TENSOR_OPS.register("range_1d")
def range_1d(end, start, step):
    return np.arange(start, end, step)


@TENSOR_OPS.register("stack")
def stack(values, axis):
    return np.stack(values, axis=int(axis))


@TENSOR_OPS.register("gather")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    """Indices along `axis` (negative ones count from the end); batch_dims leading axes shared."""
    axis, batch_dims = int(axis) % x.ndim, int(batch_dims)
    indices = np.asarray(indices).astype(np.intp)
    indices = np.where(indices < 0, indices + x.shape[axis], indices)
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    batch = x.shape[:batch_dims]
    flat_x = x.reshape(-1, *x.shape[batch_dims:])
    flat_i = indices.reshape(-1, *indices.shape[batch_dims:])
    parts = [np.take(flat_x[b], flat_i[b], axis=axis - batch_dims) for b in range(flat_x.shape[0])]
    return np.stack(parts).reshape(*batch, *parts[0].shape)


@TENSOR_OPS.register("gather_along_axis")
def gather_along_axis(x, indices, axis=0, validate_indices=False):
    axis = int(axis) % x.ndim
    indices = np.asarray(indices).astype(np.intp)
    indices = np.where(indices < 0, indices + x.shape[axis], indices)
    return np.take_along_axis(x, indices, axis=axis)


@TENSOR_OPS.register("band_part")
def band_part(x, lower=-1, upper=-1):
    """Keeps the band of the last two axes: `lower` diagonals below, `upper` above (-1: all)."""
    rows, cols = x.shape[-2:]
    i, j = np.arange(rows)[:, None], np.arange(cols)[None, :]
    keep = ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))
    return np.where(keep, x, np.zeros_like(x))


@TENSOR_OPS.register("cumsum")
def cumsum(x, axis=0, exclusive=False, reverse=False):
    axis = int(axis)
    x = np.flip(x, axis) if reverse else x
    out = np.cumsum(x, axis=axis)
    if exclusive:
        out = out - x
    return np.flip(out, axis) if reverse else out


def _axes(axes, ndim):
    return None if axes is None else tuple(int(a) % ndim for a in np.atleast_1d(axes))


@TENSOR_OPS.register("reduce_min")
def reduce_min(x, axes=None, keep_dims=False):
    return x.min(axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))


@TENSOR_OPS.register("reduce_prod")
def reduce_prod(x, axes=None, keep_dims=False):
    return x.astype(np.float32).prod(axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))


@TENSOR_OPS.register("reduce_l2_norm")
def reduce_l2_norm(x, axes=None, keep_dims=False):
    return np.sqrt(np.square(x.astype(np.float64)).sum(axis=_axes(axes, x.ndim), keepdims=bool(keep_dims)))


@TENSOR_OPS.register("reduce_argmax")
def reduce_argmax(x, axis=-1, keep_dims=False, output_dtype="int32"):
    out = np.argmax(x, axis=int(axis))
    return np.expand_dims(out, int(axis)) if keep_dims else out


@TENSOR_OPS.register("reduce_log_sum_exp")
def reduce_log_sum_exp(x, axes=None, keep_dims=False):
    x = x.astype(np.float64)
    axes = _axes(axes, x.ndim)
    top = x.max(axis=axes, keepdims=True)
    out = np.log(np.exp(x - top).sum(axis=axes, keepdims=True)) + top
    return out if keep_dims else np.squeeze(out, axis=axes)


_SCATTER_MODES = {"update": None, "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                  "max": np.maximum, "min": np.minimum}


@TENSOR_OPS.register("scatter")
def scatter(data, indices, updates, axis=0, mode="add", validate_indices=False):
    """out[..., indices[i], ...] = out[...] (mode) updates[..., i, ...] along `axis`, in order."""
    if mode not in _SCATTER_MODES:
        raise NotImplementedError(f"scatter mode '{mode}'")
    axis = int(axis) % data.ndim
    out = np.moveaxis(np.array(data, copy=True), axis, 0)
    updates = np.moveaxis(np.asarray(updates), axis, 0)
    indices = np.atleast_1d(np.asarray(indices)).astype(np.intp)
    indices = np.where(indices < 0, indices + out.shape[0], indices)
    combine = _SCATTER_MODES[mode]
    for i, index in enumerate(indices):
        out[index] = updates[i] if combine is None else combine(out[index], updates[i])
    return np.moveaxis(out, 0, axis)


@TENSOR_OPS.register("gather_nd")
def gather_nd(x, indices, batch_dims=0, validate_indices=False):
    """indices [..., K] pick x[i_1, ..., i_K] (after `batch_dims` shared leading axes): output
    shape indices.shape[:-1] + x.shape[batch_dims + K:]."""
    batch_dims = int(batch_dims)
    indices = np.asarray(indices).astype(np.intp)
    depth = indices.shape[-1]
    sizes = np.asarray(x.shape[batch_dims:batch_dims + depth])
    indices = np.where(indices < 0, indices + sizes, indices)
    if batch_dims == 0:
        return x[tuple(np.moveaxis(indices, -1, 0))]
    batch = x.shape[:batch_dims]
    flat_x = x.reshape(-1, *x.shape[batch_dims:])
    flat_i = indices.reshape(-1, *indices.shape[batch_dims:])
    parts = [flat_x[b][tuple(np.moveaxis(flat_i[b], -1, 0))] for b in range(flat_x.shape[0])]
    return np.stack(parts).reshape(*batch, *parts[0].shape)


@TENSOR_OPS.register("reverse")
def reverse(x, axes=None):
    """Flip along `axes` (every axis when absent)."""
    return np.flip(x, axis=None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)))
