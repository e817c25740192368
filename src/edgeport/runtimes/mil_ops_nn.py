"""NumPy implementations of the MIL neural-network ops: activations, elementwise math,
normalizations, resizing, transposed convolution (see `mil_ops` for the conventions).

Semantics follow coremltools' op definitions (coremltools/converters/mil/mil/ops/defs/iOS15..18):
an input the program leaves out takes the default its definition gives. Everything is computed in
float32 (float64 where a formula loses digits); the session rounds each output to the program's
dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeport.registry import Registry

NN_OPS: Registry[Callable[..., np.ndarray | tuple[np.ndarray, ...]]] = Registry("MIL op")


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7), computed in float64."""
    x = np.asarray(x, dtype=np.float64)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|


@NN_OPS.register("gelu")
def gelu(x, mode="EXACT"):
    x64 = np.asarray(x, dtype=np.float64)
    if mode == "EXACT":
        out = 0.5 * x64 * (1.0 + erf(x64 / np.sqrt(2.0)))
    elif mode == "TANH_APPROXIMATION":
        out = 0.5 * x64 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x64 + 0.044715 * x64 ** 3)))
    elif mode == "SIGMOID_APPROXIMATION":
        out = x64 * sigmoid(1.702 * x64)
    else:
        raise NotImplementedError(f"gelu mode '{mode}'")
    return out.astype(np.float32)


@NN_OPS.register("elu")
def elu(x, alpha=1.0):
    x = _f32(x)
    return np.where(x > 0, x, np.float32(alpha) * np.expm1(np.minimum(x, 0)))


@NN_OPS.register("leaky_relu")
def leaky_relu(x, alpha=0.01):
    x = _f32(x)
    return np.where(x >= 0, x, np.float32(alpha) * x)


@NN_OPS.register("prelu")
def prelu(x, alpha):
    """alpha per channel (axis 1)."""
    x = _f32(x)
    alpha = _f32(alpha).reshape([1, -1] + [1] * (x.ndim - 2))
    return np.where(x >= 0, x, alpha * x)


@NN_OPS.register("softplus")
def softplus(x):
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64)).astype(np.float32)


@NN_OPS.register("clamped_relu")
def clamped_relu(x, alpha=0.0, beta=6.0):
    x = _f32(x)
    return np.minimum(np.where(x >= 0, x, np.float32(alpha) * x), np.float32(beta))


# Activations that are one NumPy expression (`x if x >= alpha else 0` and friends, as defined).
NN_OPS.add("silu", lambda x: (np.asarray(x, dtype=np.float64) * sigmoid(x)).astype(np.float32))
NN_OPS.add("sigmoid_hard", lambda x, alpha=0.2, beta=0.5: np.clip(np.float32(alpha) * _f32(x) + np.float32(beta), 0, 1))
NN_OPS.add("thresholded_relu", lambda x, alpha=1.0: np.where(_f32(x) >= np.float32(alpha), _f32(x), np.float32(0)))
NN_OPS.add("scaled_tanh", lambda x, alpha=1.0, beta=1.0: np.float32(alpha) * np.tanh(np.float32(beta) * _f32(x)))
NN_OPS.add("linear_activation", lambda x, alpha=1.0, beta=0.0: np.float32(alpha) * _f32(x) + np.float32(beta))
NN_OPS.add("softsign", lambda x: _f32(x) / (1 + np.abs(_f32(x))))

# Elementwise unary math.
NN_OPS.add("sqrt", lambda x: np.sqrt(_f32(x)))
NN_OPS.add("rsqrt", lambda x, epsilon=1e-12: 1 / np.sqrt(_f32(x) + np.float32(epsilon)))
NN_OPS.add("square", lambda x: np.square(_f32(x)))
NN_OPS.add("exp", lambda x: np.exp(_f32(x)))
NN_OPS.add("exp2", lambda x: np.exp2(_f32(x)))
NN_OPS.add("log", lambda x, epsilon=1e-45: np.log(_f32(x) + np.float32(epsilon)))
NN_OPS.add("abs", lambda x: np.abs(x))
NN_OPS.add("sign", lambda x: np.sign(x))
NN_OPS.add("floor", lambda x: np.floor(x))
NN_OPS.add("ceil", lambda x: np.ceil(x))
NN_OPS.add("round", lambda x: np.round(x))  # MIL rounds half to even, like NumPy
NN_OPS.add("inverse", lambda x, epsilon=1e-4: 1 / (_f32(x) + np.float32(epsilon)))
NN_OPS.add("sin", lambda x: np.sin(_f32(x)))
NN_OPS.add("cos", lambda x: np.cos(_f32(x)))
NN_OPS.add("atan", lambda x: np.arctan(_f32(x)))
NN_OPS.add("logical_not", lambda x: np.logical_not(x))

# Elementwise binary math (NumPy broadcasting is MIL's).
NN_OPS.add("pow", lambda x, y: np.power(_f32(x), _f32(y)))
NN_OPS.add("maximum", lambda x, y: np.maximum(x, y))
NN_OPS.add("minimum", lambda x, y: np.minimum(x, y))
NN_OPS.add("floor_div", lambda x, y: np.floor_divide(x, y))
NN_OPS.add("mod", lambda x, y: np.mod(x, y))
NN_OPS.add("logical_and", lambda x, y: np.logical_and(x, y))
NN_OPS.add("logical_or", lambda x, y: np.logical_or(x, y))
NN_OPS.add("logical_xor", lambda x, y: np.logical_xor(x, y))


@NN_OPS.register("batch_norm")
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    """Per channel (axis 1) of a rank 3-5 input."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    out = (_f32(x) - _f32(mean).reshape(shape)) / np.sqrt(_f32(variance).reshape(shape) + np.float32(epsilon))
    if gamma is not None:
        out = out * _f32(gamma).reshape(shape)
    if beta is not None:
        out = out + _f32(beta).reshape(shape)
    return out


def _normalize(x, axes, epsilon) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    variance = np.square(x - mean).mean(axis=axes, keepdims=True)  # biased, as MIL defines it
    return (x - mean) / np.sqrt(variance + float(epsilon))


@NN_OPS.register("layer_norm")
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    """Normalized over `axes` (all when absent); gamma / beta shaped like those axes of x."""
    axes = tuple(range(x.ndim)) if axes is None else tuple(sorted(int(a) % x.ndim for a in np.atleast_1d(axes)))
    out = _normalize(x, axes, epsilon)
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    if gamma is not None:
        out = out * _f32(gamma).reshape(shape)
    if beta is not None:
        out = out + _f32(beta).reshape(shape)
    return out.astype(np.float32)


@NN_OPS.register("scaled_dot_product_attention")
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    """softmax(Q K^T / sqrt(E) + mask) V over the last two axes (iOS18); a bool mask keeps the
    positions where it is True."""
    q, k, v = _f32(query), _f32(key), _f32(value)
    scores = q @ np.swapaxes(k, -1, -2) / np.float32(np.sqrt(q.shape[-1]))
    if attn_mask is not None:
        mask = np.asarray(attn_mask)
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask.astype(np.float32)
    scores = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(scores)
    return ((e / e.sum(axis=-1, keepdims=True)) @ v).astype(np.float32)


@NN_OPS.register("instance_norm")
def instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    """Per sample and channel, over the spatial axes; gamma / beta per channel."""
    out = _normalize(x, tuple(range(2, x.ndim)), epsilon)
    shape = [1, -1] + [1] * (x.ndim - 2)
    if gamma is not None:
        out = out * _f32(gamma).reshape(shape)
    if beta is not None:
        out = out + _f32(beta).reshape(shape)
    return out.astype(np.float32)


@NN_OPS.register("l2_norm")
def l2_norm(x, axes=None, epsilon=1e-6):
    """x / sqrt(max(sum(x^2), epsilon)) over `axes` (iOS17), or over the last three axes (iOS15)."""
    axes = tuple(range(max(x.ndim - 3, 0), x.ndim)) if axes is None else \
        tuple(int(a) % x.ndim for a in np.atleast_1d(axes))
    x = np.asarray(x, dtype=np.float64)
    total = np.square(x).sum(axis=axes, keepdims=True)
    return (x / np.sqrt(np.maximum(total, float(epsilon)))).astype(np.float32)


def _linear_grid(size_in: int, size_out: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """Source coordinates of the output samples along one axis (upsample_bilinear's Notes)."""
    i = np.arange(size_out, dtype=np.float64)
    if align_corners:
        spacing = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        grid = i * spacing
    else:
        spacing = size_in / size_out
        grid = i * spacing + (0.5 * spacing - 0.5 if half_pixel_centers else 0.0)
    return np.clip(grid, 0, size_in - 1)


def _interpolate(x: np.ndarray, axis: int, grid: np.ndarray) -> np.ndarray:
    low = np.floor(grid).astype(np.intp)
    high = np.minimum(low + 1, x.shape[axis] - 1)
    frac = (grid - low).reshape([-1 if a == axis % x.ndim else 1 for a in range(x.ndim)])
    return np.take(x, low, axis=axis) * (1 - frac) + np.take(x, high, axis=axis) * frac


@NN_OPS.register("upsample_bilinear")
def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True, half_pixel_centers=None):
    """Output size floor(size * factor); sample positions from the output size (MIL's notes)."""
    align_corners = bool(align_corners)
    half_pixel = (not align_corners) if half_pixel_centers is None else bool(half_pixel_centers)
    out = np.asarray(x, dtype=np.float64)
    for axis, factor in ((-2, scale_factor_height), (-1, scale_factor_width)):
        size_in = out.shape[axis]
        size_out = int(np.floor(size_in * float(factor)))
        out = _interpolate(out, axis, _linear_grid(size_in, size_out, align_corners, half_pixel))
    return out.astype(np.float32)


@NN_OPS.register("upsample_nearest_neighbor")
def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    """Output size floor(size * factor); output i reads input floor(i / factor)."""
    out = x
    for axis, factor in ((-2, float(scale_factor_height)), (-1, float(scale_factor_width))):
        size_in = out.shape[axis]
        size_out = int(np.floor(size_in * factor))
        source = np.minimum(np.floor(np.arange(size_out) / factor).astype(np.intp), size_in - 1)
        out = np.take(out, source, axis=axis)
    return out


@NN_OPS.register("resize_bilinear")
def resize_bilinear(x, target_size_height=1, target_size_width=1, sampling_mode="DEFAULT"):
    """iOS15 resize to a target size; sampling modes map onto upsample_bilinear's grids."""
    modes = {"ALIGN_CORNERS": (True, False), "STRICT_ALIGN_CORNERS": (True, False),
             "HALF_PIXEL_CENTERS": (False, True), "DEFAULT": (False, False)}
    if sampling_mode not in modes:
        raise NotImplementedError(f"resize_bilinear sampling mode '{sampling_mode}'")
    align_corners, half_pixel = modes[sampling_mode]
    out = np.asarray(x, dtype=np.float64)
    for axis, size_out in ((-2, int(target_size_height)), (-1, int(target_size_width))):
        out = _interpolate(out, axis, _linear_grid(out.shape[axis], size_out, align_corners, half_pixel))
    return out.astype(np.float32)


@NN_OPS.register("conv_transpose")
def conv_transpose(x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None,
                   dilations=None, groups=1):
    """x [N, Cin, *D] and weight [Cin, Cout/groups, *K], 1-D or 2-D: each input value scatters
    weight * value into the full output, which is then cropped by the padding (or to
    `output_shape`)."""
    if x.ndim not in (3, 4):
        raise NotImplementedError(f"conv_transpose on rank-{x.ndim} input")
    one_d = x.ndim == 3
    if one_d:
        x, weight = x[:, :, None, :], weight[:, :, None, :]
    spatial = x.ndim - 2
    strides = [1] * spatial if strides is None else [int(s) for s in np.atleast_1d(strides)]
    dilations = [1] * spatial if dilations is None else [int(d) for d in np.atleast_1d(dilations)]
    if one_d:
        strides, dilations = [1, *strides], [1, *dilations]
    groups = int(groups)
    n, cin, h, w = x.shape
    _, cout_g, kh, kw = weight.shape
    full = ((h - 1) * strides[0] + (kh - 1) * dilations[0] + 1, (w - 1) * strides[1] + (kw - 1) * dilations[1] + 1)
    xg = _f32(x).reshape(n, groups, cin // groups, h, w)
    wg = _f32(weight).reshape(groups, cin // groups, cout_g, kh, kw)
    # contribution of each kernel tap: [n, groups, cout_g, h, w] per (i, j)
    out = np.zeros((n, groups, cout_g, *full), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            tap = np.einsum("ngchw,gco->ngohw", xg, wg[:, :, :, i, j], optimize=True)
            r, c = i * dilations[0], j * dilations[1]
            out[:, :, :, r:r + (h - 1) * strides[0] + 1:strides[0], c:c + (w - 1) * strides[1] + 1:strides[1]] += tap
    out = out.reshape(n, groups * cout_g, *full)
    for axis, (begin, size) in enumerate(_transpose_window(full, (h, w), strides, pad, output_shape, pad_type, one_d)):
        out = _window(out, axis + 2, begin, size)
    if bias is not None:
        out = out + _f32(bias).reshape(1, -1, 1, 1)
    return out[:, :, 0, :] if one_d else out


def _transpose_window(full, size_in, strides, pad, output_shape, pad_type, one_d) -> list[tuple[int, int]]:
    """(first index, size) of the output window of the full transposed-convolution result, per
    spatial axis: custom pads cut their `before` elements; `output_shape` (PyTorch's
    output_padding) or the pad type sets the size."""
    pads = [0] * 4 if pad is None else [int(p) for p in np.atleast_1d(pad)]
    if one_d:
        pads = [0, 0, *pads]
    wanted = None if output_shape is None else [int(s) for s in np.atleast_1d(output_shape)[2:]]
    if wanted is not None and one_d:
        wanted = [1, *wanted]
    window = []
    for axis in range(2):
        if pad_type == "same":
            size = wanted[axis] if wanted else size_in[axis] * strides[axis]
            begin = (full[axis] - size) // 2
        elif pad_type == "custom":
            begin = pads[2 * axis]
            size = wanted[axis] if wanted else full[axis] - pads[2 * axis] - pads[2 * axis + 1]
        else:
            begin, size = 0, (wanted[axis] if wanted else full[axis])
        window.append((max(begin, 0), size))
    return window


def _window(x: np.ndarray, axis: int, begin: int, size: int) -> np.ndarray:
    """x[begin:begin + size] along `axis`, zero-filled past the end (output_padding)."""
    part = np.take(x, np.arange(begin, min(begin + size, x.shape[axis])), axis=axis)
    missing = size - part.shape[axis]
    if missing > 0:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, missing)
        part = np.pad(part, widths)
    return part


_RECURRENT_ACTIVATIONS = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
                          "linear": lambda v: v, "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1)}


def _lstm_direction(x, h, c, weight_ih, weight_hh, bias, peephole, acts, clip, reverse: bool):
    """One direction over x [s, b, I]: the hidden states [s, b, H] in time order, final h and c.
    Gates are stored [input, forget, output, cell]."""
    gate, cell_act, out_act = acts
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    hidden = [None] * x.shape[0]
    p_i, p_f, p_o = np.split(peephole, 3) if peephole is not None else (0.0, 0.0, 0.0)
    for t in steps:
        i, f, o, z = np.split(x[t] @ weight_ih.T + h @ weight_hh.T + bias, 4, axis=-1)
        i, f = gate(i + p_i * c), gate(f + p_f * c)
        z = cell_act(z)
        c = f * c + i * z
        if clip is not None:
            c = np.clip(c, -clip, clip)
        h = gate(o + p_o * c) * out_act(c)
        hidden[t] = h
    return np.stack(hidden), h, c


@NN_OPS.register("lstm")
def lstm(x, initial_h, initial_c, weight_ih, weight_hh, bias=None, peephole=None, weight_ih_back=None,
         weight_hh_back=None, bias_back=None, peephole_back=None, direction="forward", output_sequence=False,
         recurrent_activation="sigmoid", cell_activation="tanh", activation="tanh", clip=None):
    """MIL lstm (iOS15): x [s, b, I]; states [b, directions * H]; outputs (hidden states [s or 1, b,
    directions * H], final h, final c), the backward direction's after the forward one's."""
    names = (recurrent_activation, cell_activation, activation)
    if any(n not in _RECURRENT_ACTIVATIONS for n in names):
        raise NotImplementedError(f"lstm activations {names}")
    acts = tuple(_RECURRENT_ACTIVATIONS[n] for n in names)
    x64 = np.asarray(x, dtype=np.float64)
    hidden = weight_hh.shape[1]
    zero_bias = np.zeros(4 * hidden)

    def run(h, c, w_ih, w_hh, b, p, reverse):
        b = zero_bias if b is None else np.asarray(b, np.float64)
        p = None if p is None else np.asarray(p, np.float64)
        return _lstm_direction(x64, np.asarray(h, np.float64), np.asarray(c, np.float64), np.asarray(w_ih, np.float64),
                               np.asarray(w_hh, np.float64), b, p, acts, clip, reverse)

    if direction == "bidirectional":
        forward = run(initial_h[:, :hidden], initial_c[:, :hidden], weight_ih, weight_hh, bias, peephole, False)
        backward = run(initial_h[:, hidden:], initial_c[:, hidden:], weight_ih_back, weight_hh_back, bias_back,
                       peephole_back, True)
        sequence, h, c = (np.concatenate(parts, axis=-1) for parts in zip(forward, backward))
        last = np.concatenate([forward[0][-1], backward[0][0]], axis=-1)  # each direction's final step
    elif direction in ("forward", "reverse"):
        sequence, h, c = run(initial_h, initial_c, weight_ih, weight_hh, bias, peephole, direction == "reverse")
        last = h
    else:
        raise NotImplementedError(f"lstm direction '{direction}'")
    out = sequence if output_sequence else last[None]
    return out.astype(np.float32), h.astype(np.float32), c.astype(np.float32)
