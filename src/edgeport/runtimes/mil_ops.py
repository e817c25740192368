"""NumPy implementations of the Core ML ML Program (MIL) ops found in edgeport's artifacts.

Why our own: coremltools cannot run `predict` on Linux, and Core ML itself only exists on Apple
platforms, so Linux pipelines need an evaluator to check numerics. Each op is a pure function of
its named inputs (NumPy arrays or Python scalars) returning one array or a tuple of them,
registered in `OPS` under its MIL op name right where it is defined. Ops that are not in `OPS`
are reported by name, never skipped.

fp16 models are evaluated in float32 with every op output rounded to fp16, as Core ML stores them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeport.registry import Registry

OPS: Registry[Callable[..., np.ndarray | tuple[np.ndarray, ...]]] = Registry("MIL op")


def _pads(pad_type: str, pad, spatial, kernel, strides, dilations) -> list[tuple[int, int]]:
    if pad_type == "custom":
        pad = list(pad)
        return [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(spatial))]
    if pad_type == "valid":
        return [(0, 0)] * len(spatial)
    out = []  # same / same_lower
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((int(np.ceil(size / s)) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        out.append((big, small) if pad_type == "same_lower" else (small, big))
    return out


def _windows(x, kernel, strides, dilations, pads, fill):
    """(N, C, Ho, Wo, kh, kw) view of x (N, C, H, W) after padding with `fill`."""
    x = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=fill)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    win = sliding_window_view(x, span, axis=(2, 3))
    win = win[:, :, :: strides[0], :: strides[1], :: dilations[0], :: dilations[1]]
    return win


@OPS.register("conv")
def conv(x, weight, bias=None, strides=(1, 1), pad_type="valid", pad=(0, 0, 0, 0), dilations=(1, 1), groups=1):
    """1-D (x [N, C, W]) or 2-D convolution; a 1-D one runs as 2-D with a height of 1."""
    if x.ndim == 3:
        pad = (0, 0, *[int(p) for p in np.atleast_1d(pad)]) if pad is not None else None
        out = conv(x[:, :, None, :], weight[:, :, None, :], bias, (1, *np.atleast_1d(strides)), pad_type,
                   pad, (1, *np.atleast_1d(dilations)), groups)
        return out[:, :, 0, :]
    if x.ndim != 4:
        raise NotImplementedError(f"conv on rank-{x.ndim} input")
    groups = int(groups)
    cout, cin_g, kh, kw = weight.shape
    strides, dilations = [int(s) for s in strides], [int(d) for d in dilations]
    pads = _pads(pad_type, pad, x.shape[2:], (kh, kw), strides, dilations)
    win = _windows(x.astype(np.float32), (kh, kw), strides, dilations, pads, 0.0)
    n, _, ho, wo = win.shape[:4]
    win = win.reshape(n, groups, cin_g, ho, wo, kh, kw)
    w = weight.astype(np.float32).reshape(groups, cout // groups, cin_g, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, w, optimize=True).reshape(n, cout, ho, wo)
    if bias is not None:
        out = out + bias.astype(np.float32).reshape(1, -1, 1, 1)
    return out


def _ceil_extra(size: int, kernel: int, stride: int, before: int, after: int) -> int:
    """Padding to add after an axis so that windows cover it as MIL's ceil_mode counts them:
    out = floor((size + pads - kernel + stride - 1) / stride) + 1, one less when the last window
    would start in the padding after the input (and the pool has padding)."""
    out = (size + before + after - kernel + stride - 1) // stride + 1
    if (out - 1) * stride >= size + before and (before > 0 or after > 0):
        out -= 1
    return max((out - 1) * stride + kernel - (size + before + after), 0)


def _pool(x, kernel_sizes, strides, pad_type, pad, fill, ceil_mode=False):
    """(windows, declared pads, ceil pads, kernel, strides) of a 2-D pool (a 1-D pool runs with a height of 1)."""
    kernel, strides = [int(k) for k in kernel_sizes], [int(s) for s in strides]
    pads = _pads(pad_type, pad, x.shape[2:], kernel, strides, (1, 1))
    extra = [_ceil_extra(n, k, s, *p) if ceil_mode else 0 for n, k, s, p in zip(x.shape[2:], kernel, strides, pads)]
    padded = np.pad(x.astype(np.float32), [(0, 0), (0, 0), *[(0, e) for e in extra]], constant_values=fill)
    return _windows(padded, kernel, strides, (1, 1), pads, fill), pads, extra, kernel, strides


def _as_2d(pool):
    """Run a 2-D pool on a 1-D input [N, C, W] as [N, C, 1, W]."""
    def run(x, kernel_sizes, strides, pad_type="valid", pad=None, **options):
        if x.ndim == 3:
            pad = (0, 0, *[int(p) for p in np.atleast_1d(pad)]) if pad is not None else None
            return pool(x[:, :, None, :], (1, *np.atleast_1d(kernel_sizes)), (1, *np.atleast_1d(strides)),
                        pad_type, pad, **options)[:, :, 0, :]
        if x.ndim != 4:
            raise NotImplementedError(f"pool on rank-{x.ndim} input")
        return pool(x, kernel_sizes, strides, pad_type, (0, 0, 0, 0) if pad is None else pad, **options)
    return run


def max_pool(x, kernel_sizes, strides, pad_type="valid", pad=(0, 0, 0, 0), ceil_mode=False):
    win, *_ = _pool(x, kernel_sizes, strides, pad_type, pad, -np.inf, bool(ceil_mode))
    return win.max(axis=(-2, -1))


def avg_pool(x, kernel_sizes, strides, pad_type="valid", pad=(0, 0, 0, 0), exclude_padding_from_average=False,
             ceil_mode=False):
    """The divisor counts the declared padding unless excluded, never the ceil_mode overhang."""
    win, pads, extra, kernel, strides = _pool(x, kernel_sizes, strides, pad_type, pad, 0.0, bool(ceil_mode))
    total = win.sum(axis=(-2, -1))
    ones = np.ones((1, 1, *x.shape[2:]), dtype=np.float32)
    if not exclude_padding_from_average:  # the declared padding counts, the overhang does not
        ones = np.pad(ones, [(0, 0), (0, 0), *pads], constant_values=1.0)
        pads = [(0, 0), (0, 0)]
    ones = np.pad(ones, [(0, 0), (0, 0), *[(0, e) for e in extra]])
    counts = _windows(ones, kernel, strides, (1, 1), pads, 0.0).sum(axis=(-2, -1))
    return total / counts


OPS.add("max_pool", _as_2d(max_pool))
OPS.add("avg_pool", _as_2d(avg_pool))


@OPS.register("linear")
def linear(x, weight, bias=None):
    out = x.astype(np.float32) @ weight.astype(np.float32).T
    return out if bias is None else out + bias.astype(np.float32)


@OPS.register("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = x.astype(np.float32), y.astype(np.float32)
    if transpose_x:
        x = np.swapaxes(x, -1, -2)
    if transpose_y:
        y = np.swapaxes(y, -1, -2)
    return x @ y


def _axes(axes, ndim):
    return None if axes is None else tuple(int(a) % ndim for a in np.atleast_1d(axes))


@OPS.register("reduce_mean")
def reduce_mean(x, axes=None, keep_dims=False):
    return x.astype(np.float32).mean(axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))


@OPS.register("reduce_sum")
def reduce_sum(x, axes=None, keep_dims=False):
    return x.astype(np.float32).sum(axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))


@OPS.register("reduce_max")
def reduce_max(x, axes=None, keep_dims=False):
    return x.max(axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))


@OPS.register("softmax")
def softmax(x, axis=-1):
    x = x.astype(np.float32)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


@OPS.register("concat")
def concat(values, axis, interleave=False):
    """interleave: inputs of one shape, output[i::n] = values[i] along `axis` (a channel shuffle)."""
    if interleave:
        axis = int(axis) % values[0].ndim
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=int(axis))


@OPS.register("constexpr_affine_dequantize")
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    shape = [1] * quantized_data.ndim
    if np.ndim(scale) == 1:
        shape[int(axis)] = -1
    scale = np.reshape(scale, shape if np.ndim(scale) == 1 else ())
    zero_point = np.reshape(zero_point, shape if np.ndim(zero_point) == 1 else ())
    return ((quantized_data.astype(np.float32) - zero_point.astype(np.float32)) * scale.astype(np.float32)).astype(
        np.asarray(scale).dtype)


@OPS.register("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(data, scale, offset=None):
    """iOS18: scale * (data - offset), each scale (offset) covering a block of data.shape /
    scale.shape values along every axis."""
    def expand(values):
        for axis, (n, blocks) in enumerate(zip(data.shape, np.shape(values))):
            values = np.repeat(values, n // blocks, axis=axis)
        return values.astype(np.float32)

    values = data.astype(np.float32) - (expand(offset) if offset is not None else 0.0)
    return (values * expand(scale)).astype(np.asarray(scale).dtype)


@OPS.register("constexpr_lut_to_dense")
def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    """iOS16 form (`shape` given): bit-packed indices into one LUT. iOS18 form: indices shaped
    like the output (one integer each) and a LUT [groups per axis..., 2^bits, vector size], each
    group of the output reading its own palette."""
    from edgeport.quantizers.compress import unpack_bits

    if shape is not None:
        count = int(np.prod(shape))
        bits = int(np.log2(lut.size))
        return lut[unpack_bits(indices, bits, count)].reshape([int(s) for s in shape])
    if lut.shape[-1] != 1:
        raise NotImplementedError("vector palettization (LUT vector size > 1)")
    table = lut[..., 0]
    # which palette each output element reads: its position // group size, along every axis
    groups = [(np.arange(n) // (n // g)).reshape([-1 if a == axis else 1 for a in range(indices.ndim)])
              for axis, (n, g) in enumerate(zip(indices.shape, table.shape[:-1]))]
    return table[(*groups, indices.astype(np.intp))]


@OPS.register("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(nonzero_data, mask, shape=None):
    """iOS16 form (`shape` given): a bit-packed mask. iOS18 form: the mask shaped like the output."""
    if shape is None:
        dense = np.zeros(mask.shape, dtype=nonzero_data.dtype)
        dense[mask != 0] = nonzero_data
        return dense
    count = int(np.prod(shape))
    dense = np.zeros(count, dtype=nonzero_data.dtype)
    dense[np.flatnonzero(np.unpackbits(mask, bitorder="little")[:count])] = nonzero_data
    return dense.reshape([int(s) for s in shape])


_DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "uint16": np.uint16,
           "int8": np.int8, "uint8": np.uint8, "bool": np.bool_, "int64": np.int64}


@OPS.register("cast")
def cast(x, dtype):
    return np.asarray(x).astype(_DTYPES[str(dtype)])


@OPS.register("quantize")
def quantize(input, scale, zero_point=None, axis=None, output_dtype="int8"):  # noqa: A002 - MIL's name
    dtype = _DTYPES[str(output_dtype)]
    info = np.iinfo(dtype)
    shape = [1] * input.ndim
    if np.ndim(scale) == 1:
        shape[int(axis)] = -1
    scale = np.reshape(scale, shape if np.ndim(scale) == 1 else ()).astype(np.float32)
    zp = 0 if zero_point is None else np.reshape(zero_point, shape if np.ndim(zero_point) == 1 else ()).astype(np.int32)
    return np.clip(np.rint(input.astype(np.float32) / scale) + zp, info.min, info.max).astype(dtype)


@OPS.register("dequantize")
def dequantize(input, scale, zero_point=None, axis=None):  # noqa: A002 - MIL's name
    shape = [1] * input.ndim
    if np.ndim(scale) == 1:
        shape[int(axis)] = -1
    scale = np.reshape(scale, shape if np.ndim(scale) == 1 else ())
    zp = 0 if zero_point is None else np.reshape(zero_point, shape if np.ndim(zero_point) == 1 else ()).astype(np.float32)
    return ((input.astype(np.float32) - zp) * scale.astype(np.float32)).astype(np.asarray(scale).dtype)


# Ops that are one NumPy expression.
OPS.add("relu", lambda x: np.maximum(x, 0))
OPS.add("relu6", lambda x: np.clip(x, 0, 6))
OPS.add("clip", lambda x, alpha, beta: np.clip(x, alpha, beta))
OPS.add("sigmoid", lambda x: 1 / (1 + np.exp(-x.astype(np.float32))))
OPS.add("tanh", lambda x: np.tanh(x.astype(np.float32)))
OPS.add("add", lambda x, y: x.astype(np.float32) + y.astype(np.float32))
OPS.add("sub", lambda x, y: x.astype(np.float32) - y.astype(np.float32))
OPS.add("mul", lambda x, y: x.astype(np.float32) * y.astype(np.float32))
OPS.add("real_div", lambda x, y: x.astype(np.float32) / y.astype(np.float32))
OPS.add("reshape", lambda x, shape: np.reshape(x, [int(s) for s in shape]))
OPS.add("transpose", lambda x, perm: np.transpose(x, [int(p) for p in perm]))
OPS.add("squeeze", lambda x, axes=None: np.squeeze(x, axis=_axes(axes, x.ndim)))
OPS.add("expand_dims", lambda x, axes: np.expand_dims(x, tuple(int(a) for a in np.atleast_1d(axes))))
OPS.add("identity", lambda x: x)
OPS.add("greater", lambda x, y: np.greater(x, y))
OPS.add("greater_equal", lambda x, y: np.greater_equal(x, y))
OPS.add("less", lambda x, y: np.less(x, y))
OPS.add("less_equal", lambda x, y: np.less_equal(x, y))
OPS.add("equal", lambda x, y: np.equal(x, y))
OPS.add("not_equal", lambda x, y: np.not_equal(x, y))
OPS.add("select", lambda cond, a, b: np.where(cond, a, b))
OPS.add("constexpr_cast", lambda source_val, output_dtype: cast(source_val, output_dtype))
