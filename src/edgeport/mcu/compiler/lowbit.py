"""Binary and ternary weights in the C library: packing, and the integer arithmetic of its kernels.

A network trained with binary (BinaryConnect / BWN / XNOR-Net) or ternary (TWN) weights reaches
the int8 .tflite with each output channel's weights α_c·{-1, +1} (or α_c·{-1, 0, +1}) and α_c as
the channel's scale: its int8 filter holds only the integers -1 and +1 (or -1, 0, +1). Stored
as int8 that is 8 bits for 1 (or 1.6) bits of information; `pack_lowbit` stores it in 1 (or 2)
bits, along the reduction axis so the kernels (`kernels/ep_lowbit.c`) read 32 weights per word:

- binary: per output channel, ceil(cols / 32) words; bit i % 32 of word i // 32 is 1 where
  weight i is +1, 0 where it is -1 (and 0 past the row's end);
- ternary: per block of 32 weights two words, the +1 mask then the -1 mask (a zero weight has
  neither bit): 2 bits per weight.

The kernels compute TFLite's int32 accumulator acc = bias + Σ_i (x_i + o)·w_i (o the input
offset, -zero point) exactly, without multiplying by weights:

- int8 inputs (add/subtract): with v_i = x_i + o, acc = bias + Σ_{w=+1} v - Σ_{w=-1} v; for
  binary weights that is 2·Σ_{w=+1} v - Σ v, for ternary Σ_{w=+1} v - Σ_{w=-1} v (zeros add
  nothing);
- binary inputs (XNOR): when x only takes two int8 values, `one` (coded as bit b_i = 1) and
  `other` (b_i = 0), with A = one + o and B = other + o, x_i + o = B + (A - B)·b_i. For binary
  weights (s_i = 1 where w_i = +1, w_i = 2 s_i - 1) and n weights, Σ b_i w_i = P - d, where P =
  popcount(s) and d = popcount(b XOR s), so

      acc = [bias + B·(2P - n) + (A - B)·P] - (A - B)·popcount(b XOR s);

  for ternary weights (masks p, q of the +1 and -1 weights)

      acc = [bias + B·(popcount(p) - popcount(q))] + (A - B)·(popcount(b AND p) - popcount(b AND q)).

  The bracket is a per-channel constant (`xnor_row_terms`, without the bias). A and B need not
  be symmetric: LiteRT's sign gives the int8 values 127 and -128 (A = 127, B = -128 with zero
  point 0, so A - B = 255), which this formula takes as they are. In a convolution, taps in the
  padding add nothing in TFLite; they have b_i = 0, so the bracket counted B·w_i for each of
  them, which the kernel takes back: with u the mask of those taps,
  binary: - B·(2·popcount(s AND u) - popcount(u)); ternary: - B·(popcount(p AND u) - popcount(q AND u)).

Pure functions: NumPy in, NumPy out. `lowbit_reference_fc` and `lowbit_reference_conv` compute
the accumulators from the packed bits with these formulas (the tests' NumPy reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("binary", "ternary")
BLOCK = 32  # weights per word


def lowbit_kind(matrix) -> str | None:
    """"binary" if every value is -1 or +1, "ternary" if every value is -1, 0 or +1, else None."""
    values = set(np.unique(np.asarray(matrix)).tolist())
    if values <= {-1, 1}:
        return "binary"
    if values <= {-1, 0, 1}:
        return "ternary"
    return None


def _words(bits: np.ndarray) -> np.ndarray:
    """Bits [rows, blocks * 32] (0/1) as little-endian uint32 words [rows, blocks], bit i of the
    row at bit i % 32 of word i // 32."""
    rows = bits.shape[0]
    packed = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u4").reshape(rows, -1).astype(np.uint32)


def _bits(words: np.ndarray) -> np.ndarray:
    """Inverse of `_words`: uint32 words [rows, n] -> bits [rows, 32 n] (uint8 0/1)."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    return np.unpackbits(words.view(np.uint8).reshape(words.shape[0], -1), axis=1, bitorder="little")


@dataclass(frozen=True)
class LowbitWeights:
    """A weight matrix [rows, cols] of -1/+1 (binary) or -1/0/+1 (ternary) values as packed words
    [rows, row_words] (see the module docstring)."""

    kind: str
    rows: int
    cols: int
    words: np.ndarray  # uint32 [rows, row_words]

    @property
    def blocks(self) -> int:
        """Blocks of 32 weights per row."""
        return -(-self.cols // BLOCK)

    @property
    def row_words(self) -> int:
        return self.blocks * (2 if self.kind == "ternary" else 1)

    @property
    def nbytes(self) -> int:
        return int(self.words.size) * 4

    @property
    def format(self) -> str:
        return "binary 1-bit" if self.kind == "binary" else "ternary 2-bit"

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(+1 mask, -1 mask) as bits [rows, blocks * 32]; 0 past `cols`."""
        if self.kind == "binary":
            plus = _bits(self.words)
            valid = np.arange(plus.shape[1]) < self.cols
            return plus, ((1 - plus) * valid).astype(np.uint8)
        return _bits(self.words[:, 0::2]), _bits(self.words[:, 1::2])

    def decode(self) -> np.ndarray:
        """The int8 matrix the words stand for."""
        plus, minus = self.masks()
        return (plus.astype(np.int8) - minus.astype(np.int8))[:, :self.cols]


def pack_lowbit(matrix, kind: str | None = None) -> LowbitWeights:
    """Pack an int8 matrix [rows, cols] whose values are ⊂ {-1, +1} (binary) or ⊂ {-1, 0, +1}
    (ternary); `kind` None: the smallest that fits (`lowbit_kind`).

    Raises:
        ValueError: the values do not fit `kind` (or neither kind).
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"a weight matrix is 2-D, got shape {list(matrix.shape)}")
    fits = lowbit_kind(matrix)
    kind = kind or fits
    if kind not in KINDS or fits is None or (kind == "binary" and fits != "binary"):
        raise ValueError(f"values {sorted(set(np.unique(matrix).tolist()))[:8]} are not {kind or 'binary or ternary'}")
    rows, cols = matrix.shape
    padded = np.zeros((rows, -(-cols // BLOCK) * BLOCK), dtype=np.int8)
    padded[:, :cols] = matrix
    plus = _words(padded == 1)
    if kind == "binary":
        return LowbitWeights(kind, rows, cols, plus)
    minus = _words(padded == -1)
    return LowbitWeights(kind, rows, cols, np.stack([plus, minus], axis=2).reshape(rows, -1))


def pack_input_bits(x, one: int) -> np.ndarray:
    """Binary inputs [batches, n] as bits b_i = (x_i == one), uint8 0/1 [batches, blocks * 32]:
    what the XNOR kernels build (0 past n)."""
    x = np.asarray(x).reshape(len(x), -1)
    bits = np.zeros((x.shape[0], -(-x.shape[1] // BLOCK) * BLOCK), dtype=np.uint8)
    bits[:, :x.shape[1]] = x == one
    return bits


def xnor_row_terms(packed: LowbitWeights, one: int, other: int, input_offset: int) -> np.ndarray:
    """Per output channel, the accumulator's constant part on binary inputs (bias not included):
    binary B·(2P - n) + (A - B)·P, ternary B·(popcount(p) - popcount(q)), with A = one + o,
    B = other + o (int64)."""
    plus, minus = packed.masks()
    a, b = one + input_offset, other + input_offset
    pos, neg = plus.sum(axis=1, dtype=np.int64), minus.sum(axis=1, dtype=np.int64)
    if packed.kind == "binary":
        return b * (2 * pos - packed.cols) + (a - b) * pos
    return b * (pos - neg)


def _bias(bias, rows: int) -> np.ndarray:
    return np.zeros(rows, np.int64) if bias is None else np.asarray(bias, np.int64)


def _lowbit_sums(values: np.ndarray, outside: np.ndarray | None, packed: LowbitWeights,
                 binary_input: tuple[int, int] | None, input_offset: int) -> np.ndarray:
    """Accumulators without the bias [vectors, rows] of input vectors [vectors, cols] (int8, or
    patches) by the kernels' formulas; `outside`: taps in the padding (bool), None for none."""
    plus, minus = (m.astype(np.int64) for m in packed.masks())
    width = plus.shape[1]
    vectors = values.shape[0]
    pad = np.zeros((vectors, width - packed.cols), np.int64)
    outside = np.zeros(values.shape, bool) if outside is None else outside
    u = np.concatenate([outside.astype(np.int64), pad], axis=1)
    if binary_input is None:  # add/subtract: the masked sums of v = x + o (0 in the padding)
        v = np.concatenate([np.where(outside, 0, values.astype(np.int64) + input_offset), pad], axis=1)
        if packed.kind == "binary":
            return 2 * (v @ plus.T) - v.sum(axis=1, keepdims=True)
        return v @ plus.T - v @ minus.T
    one, other = binary_input
    a, b = one + input_offset, other + input_offset
    bits = pack_input_bits(values, one).astype(np.int64) * (1 - u)
    terms = xnor_row_terms(packed, one, other, input_offset)[None, :]
    if packed.kind == "binary":
        d = (bits[:, None, :] ^ plus[None, :, :]).sum(axis=2)  # popcount(b XOR s)
        return terms - (a - b) * d - b * (2 * (u @ plus.T) - u.sum(axis=1, keepdims=True))
    return terms + (a - b) * (bits @ plus.T - bits @ minus.T) - b * (u @ plus.T - u @ minus.T)


def lowbit_reference_fc(x_q, packed: LowbitWeights, *, input_offset: int, bias=None,
                        binary_input: tuple[int, int] | None = None) -> np.ndarray:
    """FULLY_CONNECTED's int32 accumulators (bias included) [batches, rows], from the packed bits.

    Args:
        x_q: int8 inputs [batches, cols] (or anything reshaped to rows of `cols`).
        packed: the weights from `pack_lowbit`.
        input_offset: -(input zero point).
        bias: int32 per output channel, or None.
        binary_input: (one, other) when x only takes these two int8 values: the XNOR formula,
            with bit 1 for `one`; None: the add/subtract formula.
    """
    x = np.asarray(x_q).reshape(-1, packed.cols)
    if binary_input is not None and not np.all(np.isin(x, binary_input)):
        raise ValueError(f"the input takes values besides {binary_input}")
    return _lowbit_sums(x, None, packed, binary_input, input_offset) + _bias(bias, packed.rows)


def conv_patches(x_q, k: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                 pad: tuple[int, int], out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """im2col of an NHWC int8 input: patches [batches * out_h * out_w, k_h * k_w * in_c] in
    filter order and the mask of taps in the padding (their values 0)."""
    x = np.asarray(x_q)
    n, h, w, c = x.shape
    out_h, out_w = out_hw
    patches = np.zeros((n, out_h, out_w, k[0], k[1], c), x.dtype)
    outside = np.ones((n, out_h, out_w, k[0], k[1], c), bool)
    for ky in range(k[0]):
        iy = np.arange(out_h) * stride[0] - pad[0] + ky * dilation[0]
        for kx in range(k[1]):
            ix = np.arange(out_w) * stride[1] - pad[1] + kx * dilation[1]
            inside = ((iy >= 0) & (iy < h))[:, None] & ((ix >= 0) & (ix < w))[None, :]
            taps = x[:, np.clip(iy, 0, h - 1)][:, :, np.clip(ix, 0, w - 1)]
            patches[:, :, :, ky, kx] = np.where(inside[None, :, :, None], taps, 0)
            outside[:, :, :, ky, kx] = ~inside[None, :, :, None]
    return patches.reshape(n * out_h * out_w, -1), outside.reshape(n * out_h * out_w, -1)


def lowbit_reference_conv(x_q, packed: LowbitWeights, *, k: tuple[int, int], out_hw: tuple[int, int],
                          input_offset: int, bias=None, stride=(1, 1), dilation=(1, 1), pad=(0, 0),
                          binary_input: tuple[int, int] | None = None) -> np.ndarray:
    """CONV_2D's int32 accumulators (bias included) [batches, out_h, out_w, rows] of an NHWC int8
    input, from the packed bits (taps in the padding add nothing, as in TFLite); arguments as
    `lowbit_reference_fc`, plus the window: filter size `k`, `stride`, `dilation`, top/left
    padding `pad`, output size `out_hw`."""
    x = np.asarray(x_q)
    patches, outside = conv_patches(x, k, stride, dilation, pad, out_hw)
    if binary_input is not None and not np.all(np.isin(patches[~outside], binary_input)):
        raise ValueError(f"the input takes values besides {binary_input}")
    acc = _lowbit_sums(patches, outside, packed, binary_input, input_offset) + _bias(bias, packed.rows)
    return acc.reshape(x.shape[0], *out_hw, packed.rows)
