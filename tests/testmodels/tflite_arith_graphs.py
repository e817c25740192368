"""Small int8 .tflite graphs of the arith ops (MUL, SUB, MAXIMUM, MINIMUM, RESIZE_NEAREST_NEIGHBOR,
RESIZE_BILINEAR), built with `tflite_graphs.GraphBuilder` for the C library's bit-exactness tests.

Each graph has one int8 input and one int8 output: every op instance's output is flattened and
the pieces concatenated (all share one quantization, so CONCATENATION copies bytes), and the
builders return the pieces' names and sizes (`Segments`) so that a test can check each one on
its own. The binary ops take a constant first or second (per channel, full, scalar, of lower
rank), or a second activation computed from the input (a requantized copy, a MEAN: broadcast
between two activations), over 4-, 5- and 6-D shapes; the resize ops go up and down with every
allowed combination of align_corners and half_pixel_centers.
"""

from __future__ import annotations

import numpy as np

from testmodels.tflite_graphs import GraphBuilder, schema

ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
MAX_CONCAT = 8  # inputs per CONCATENATION the C library takes
Segments = list[tuple[str, int]]


class ArithBuilder(GraphBuilder):
    """GraphBuilder with the arith ops and a way to collect many outputs into one."""

    def binary(self, op: str, a: int, b: int, scale: float, zero_point: int, act: str = "NONE") -> int:
        """MUL, SUB, MAXIMUM or MINIMUM of a and b (broadcast), output quantized as given."""
        shape = tuple(np.broadcast_shapes(self.shape(a), self.shape(b)))
        y = self.activation(f"{op.lower()}{len(self.tensors)}", shape, scale, zero_point)
        if op in ("MUL", "SUB"):
            options = schema.MulOptionsT() if op == "MUL" else schema.SubOptionsT()
            options.fusedActivationFunction = ACTIVATIONS[act]
        else:
            options = schema.MaximumMinimumOptionsT()
        self.op(op, [a, b], [y], options)
        return y

    def resize(self, op: str, x: int, size, align_corners: bool = False, half_pixel_centers: bool = False) -> int:
        """RESIZE_NEAREST_NEIGHBOR or RESIZE_BILINEAR of NHWC x to `size` (a constant), quantized as x."""
        n, _, _, c = self.shape(x)
        size_t = self.const(f"size{len(self.tensors)}", np.array(size, dtype=np.int32))
        y = self.activation(f"{op.lower()}{len(self.tensors)}", (n, *size, c), self.scale(x), self.zero_point(x))
        options = schema.ResizeBilinearOptionsT() if op == "RESIZE_BILINEAR" else schema.ResizeNearestNeighborOptionsT()
        options.alignCorners, options.halfPixelCenters = align_corners, half_pixel_centers
        self.op(op, [x, size_t], [y], options)
        return y

    def int8_const(self, name: str, shape, scale: float, zero_point: int, values=(-128, 128)) -> int:
        """A constant of random int8 values (from the builder's seed), one scale."""
        data = self.rng.integers(*values, shape).astype(np.int8)
        return self.const(name, data, scale, zero_point)

    def gather(self, pieces: list[tuple[str, int]]) -> tuple[int, Segments]:
        """Flatten each (name, tensor) and concatenate them all (nested, MAX_CONCAT at a time)."""
        flat = [self.reshape(t, [1, int(np.prod(self.shape(t)))]) for _, t in pieces]
        while len(flat) > 1:
            flat = [self.concatenate(flat[i:i + MAX_CONCAT], axis=1) if len(flat[i:i + MAX_CONCAT]) > 1
                    else flat[i] for i in range(0, len(flat), MAX_CONCAT)]
        return flat[0], [(name, int(np.prod(self.shape(t)))) for name, t in pieces]


def _reshaped(g: ArithBuilder, x: int) -> tuple[int, int]:
    """The [1, 4, 5, 3] input as 5-D [1, 2, 2, 5, 3] and 6-D [2, 1, 2, 5, 1, 3]."""
    return g.reshape(x, [1, 2, 2, 5, 3]), g.reshape(x, [2, 1, 2, 5, 1, 3])


def mul_graph(seed: int = 41) -> tuple[bytes, Segments]:
    """int8 [1, 4, 5, 3] (scale 0.05, zero point 7) -> MUL with a per-channel constant, with a full
    constant first, RELU with a rank-3 constant first, RELU6 with a requantized copy (zero point
    -128), with a scalar, with itself, 5-D and 6-D broadcasts (both inputs broadcast), RELU_N1_TO_1
    with the input's MEAN over W (two activations, broadcast). Constants of about +-1."""
    g = ArithBuilder(seed)
    x = g.activation("input", (1, 4, 5, 3), 0.05, 7)
    out = (0.06, -3)
    x5, x6 = _reshaped(g, x)
    copy = g.requantize(x, 0.03, -128)
    mean = g.mean(x, [2], keep_dims=True)
    pieces = [
        ("x * channels", g.binary("MUL", x, g.int8_const("c_ch", (3,), 1 / 128, 0), *out)),
        ("full * x", g.binary("MUL", g.int8_const("c_full", (1, 4, 5, 3), 0.009, -20), x, *out)),
        ("rank-3 * x relu", g.binary("MUL", g.int8_const("c_r3", (4, 1, 1), 0.01, 5), x, *out, act="RELU")),
        ("x * copy relu6", g.binary("MUL", x, copy, *out, act="RELU6")),
        ("x * scalar", g.binary("MUL", x, g.const("c_scalar", np.array(-100, np.int8), 0.01, 27), *out)),
        ("x * x", g.binary("MUL", x, x, *out)),
        ("5-D", g.binary("MUL", x5, g.int8_const("c5", (2, 1, 5, 1), 1 / 128, -3), *out)),
        ("6-D", g.binary("MUL", g.int8_const("c6", (2, 1, 1, 1, 4, 1), 1 / 128, 9), x6, *out)),
        ("x * mean relu_n1_to_1", g.binary("MUL", x, mean, *out, act="RELU_N1_TO_1")),
    ]
    y, segments = g.gather(pieces)
    return g.build([x], [y]), segments


def column_graph(op: str, x_quant, c_quant, out_quant, values) -> tuple[bytes, Segments]:
    """int8 [16, 16] (x_quant: scale, zero point) -> `op` (MUL or SUB) with a constant [16] of
    `values` (c_quant) broadcast over the rows -> int8 [16, 16] (out_quant). Given inputs in which
    every column takes all 256 values, every pair of an int8 value and a constant meets: the graph
    for scales chosen to hit one rounding case."""
    g = ArithBuilder(0)
    x = g.activation("input", (16, 16), *x_quant)
    c = g.const("c", np.array(values, np.int8), *c_quant)
    y = g.binary(op, x, c, *out_quant)
    return g.build([x], [y]), [(f"x {op} c", 256)]


def sub_graph(seed: int = 42) -> tuple[bytes, Segments]:
    """int8 [1, 4, 5, 3] (scale 0.05, zero point 7) -> SUB of a per-channel constant, from a full
    constant (RELU), of the MEAN over W (two activations, broadcast, RELU6), of a copy requantized
    to another scale and zero point 100, from a scalar, 5-D and 6-D broadcasts (constant first)."""
    g = ArithBuilder(seed)
    x = g.activation("input", (1, 4, 5, 3), 0.05, 7)
    out = (0.1, 5)
    x5, x6 = _reshaped(g, x)
    pieces = [
        ("x - channels", g.binary("SUB", x, g.int8_const("c_ch", (3,), 0.05, -10), *out)),
        ("full - x relu", g.binary("SUB", g.int8_const("c_full", (1, 4, 5, 3), 0.04, 3), x, *out, act="RELU")),
        ("x - mean relu6", g.binary("SUB", x, g.mean(x, [2], keep_dims=True), *out, act="RELU6")),
        ("x - copy", g.binary("SUB", x, g.requantize(x, 0.02, 100), *out)),
        ("scalar - x", g.binary("SUB", g.const("c_scalar", np.array(90, np.int8), 0.03, -128), x, *out)),
        ("5-D", g.binary("SUB", x5, g.int8_const("c5", (2, 1, 5, 1), 0.06, 0), *out)),
        ("6-D", g.binary("SUB", g.int8_const("c6", (2, 1, 1, 1, 4, 1), 0.05, 127), x6, *out)),
    ]
    y, segments = g.gather(pieces)
    return g.build([x], [y]), segments


def minmax_graph(seed: int = 43) -> tuple[bytes, Segments]:
    """int8 [1, 4, 5, 3] -> MAXIMUM / MINIMUM with per-channel, full and scalar constants (first
    and second), the MEAN over H (another quantization: LiteRT compares the bytes as they are), a
    requantized copy, 5-D and 6-D broadcasts; outputs quantized as the input."""
    g = ArithBuilder(seed)
    x = g.activation("input", (1, 4, 5, 3), 0.05, 7)
    out = (0.05, 7)
    x5, x6 = _reshaped(g, x)
    pieces = [
        ("max(x, channels)", g.binary("MAXIMUM", x, g.int8_const("c_ch", (3,), *out), *out)),
        ("min(full, x)", g.binary("MINIMUM", g.int8_const("c_full", (1, 4, 5, 3), *out), x, *out)),
        ("max(x, mean)", g.binary("MAXIMUM", x, g.mean(x, [1], keep_dims=True), *out)),
        ("min(x, scalar)", g.binary("MINIMUM", x, g.const("c_scalar", np.array(20, np.int8), *out), *out)),
        ("max(copy, x)", g.binary("MAXIMUM", g.requantize(x, 0.04, -5), x, *out)),
        ("min 5-D", g.binary("MINIMUM", x5, g.int8_const("c5", (2, 1, 5, 1), *out), *out)),
        ("max 6-D", g.binary("MAXIMUM", g.int8_const("c6", (2, 1, 1, 1, 4, 1), *out), x6, *out)),
    ]
    y, segments = g.gather(pieces)
    return g.build([x], [y]), segments


# (size, align_corners, half_pixel_centers) per resize; bilinear refuses both flags together
NEAREST_CASES = [((9, 11), False, False), ((9, 11), True, False), ((9, 11), False, True), ((9, 11), True, True),
                 ((3, 4), False, False), ((3, 4), True, False), ((3, 4), False, True), ((3, 4), True, True),
                 ((7, 13), False, False), ((1, 1), True, False), ((1, 1), False, True), ((10, 2), True, True)]
BILINEAR_CASES = [((9, 11), False, False), ((9, 11), True, False), ((9, 11), False, True),
                  ((3, 4), False, False), ((3, 4), True, False), ((3, 4), False, True),
                  ((7, 13), False, True), ((1, 1), True, False), ((1, 1), False, True), ((5, 6), False, False),
                  ((10, 2), True, False), ((2, 17), False, True)]


def resize_graph(op: str, cases=None, shape=(2, 5, 6, 3), seed: int = 44) -> tuple[bytes, Segments]:
    """int8 `shape` (default [2, 5, 6, 3], two batches) -> `op` (RESIZE_NEAREST_NEIGHBOR or
    RESIZE_BILINEAR) for each (size, align_corners, half_pixel_centers) of `cases`; by default
    NEAREST_CASES / BILINEAR_CASES: larger, smaller, mixed, 1x1 and unchanged sizes with each
    allowed flag combination."""
    g = ArithBuilder(seed)
    x = g.activation("input", shape, 0.05, 7)
    cases = cases or (NEAREST_CASES if op == "RESIZE_NEAREST_NEIGHBOR" else BILINEAR_CASES)
    pieces = [(f"{size} align={int(align)} half={int(half)}", g.resize(op, x, size, align, half))
              for size, align, half in cases]
    y, segments = g.gather(pieces)
    return g.build([x], [y]), segments


def arith_graph(seed: int = 45) -> tuple[bytes, Segments]:
    """All six ops in one graph (the QEMU check): int8 [1, 6, 5, 4] -> MUL by a per-channel
    constant (RELU), SUB of the MEAN over W, MAXIMUM with a constant, MINIMUM of a constant and
    the MUL, RESIZE_NEAREST_NEIGHBOR of the SUB (half_pixel_centers), RESIZE_BILINEAR of the
    MAXIMUM (align_corners) and of the input (half_pixel_centers); one quantization throughout."""
    g = ArithBuilder(seed)
    q = (0.05, -3)
    x = g.activation("input", (1, 6, 5, 4), *q)
    mul = g.binary("MUL", x, g.int8_const("c_ch", (4,), 1 / 128, 2), *q, act="RELU")
    sub = g.binary("SUB", x, g.mean(x, [2], keep_dims=True), *q)
    maximum = g.binary("MAXIMUM", x, g.int8_const("c_full", (1, 6, 5, 4), *q), *q)
    minimum = g.binary("MINIMUM", g.int8_const("c_col", (6, 1, 1), *q), mul, *q)
    pieces = [("mul", mul), ("sub", sub), ("maximum", maximum), ("minimum", minimum),
              ("nearest(sub)", g.resize("RESIZE_NEAREST_NEIGHBOR", sub, (9, 7), half_pixel_centers=True)),
              ("bilinear(maximum)", g.resize("RESIZE_BILINEAR", maximum, (4, 8), align_corners=True)),
              ("bilinear(x)", g.resize("RESIZE_BILINEAR", x, (11, 3), half_pixel_centers=True))]
    y, segments = g.gather(pieces)
    return g.build([x], [y]), segments


def single_graph(op: str, shapes, scales, act: str = "NONE", size=(4, 4), align: bool = False,
                 half: bool = False, values=(-128, 128)) -> bytes:
    """One op: a binary op of the input (shape, scale) and a constant (shape, scale, int8 values in
    [values[0], values[1])) into an output scale, or a resize of the input to `size`."""
    g = ArithBuilder(0)
    x = g.activation("input", shapes[0], scales[0], 0)
    if op.startswith("RESIZE"):
        y = g.resize(op, x, size, align, half)
    else:
        y = g.binary(op, x, g.int8_const("c", shapes[1], scales[1], 0, values), scales[2], 0, act)
    return g.build([x], [y])
