"""The arith op family of the Cortex-M C library (lowering_arith, kernels/ep_arith.c): MUL, SUB,
MAXIMUM, MINIMUM, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR on int8.

TFLite's Prepare arithmetic as pure functions (known values, bounds, the float32 MUL multiplier);
the configurations the library refuses; then the graphs of testmodels.tflite_arith_graphs
(constants first and second, 4- to 6-D broadcasts, fused RELU / RELU6 / RELU_N1_TO_1, resizes up
and down with each flag) compiled on the host (plain C and the DSP path emulated) and, one graph
with all six ops, built for Cortex-M0 and Cortex-M4 and run in QEMU, compared byte for byte with
LiteRT's reference kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.errors import UnsupportedOpError
from edgeport.mcu.compiler import requant
from edgeport.mcu.compiler.codegen import generate_library
from edgeport.mcu.compiler.lowering_arith import (
    bilinear_taps,
    mul_multiplier,
    mul_product_bound,
    nearest_indices,
)
from edgeport.mcu.compiler.tflite_ir import read_tflite
from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu, toolchain_missing

from conftest import DSP_VARIANTS, litert_reference, needs_gcc, needs_litert, run_c
from testmodels import tflite_arith_graphs as graphs

MISSING = toolchain_missing()
needs_toolchain = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
SAMPLES = 12
MIN_DISTINCT = 30  # distinct int8 values each op instance must produce over the samples

# scales whose MUL multiplier differs between float32 (TFLite) and double arithmetic: the products
# +-836 (11 * 76, 19 * 44, 22 * 38) give other outputs
F32_SCALES = (0.07699426263570786, 0.043334417045116425, 0.028335900977253914)
MUL_F32 = ("MUL", (F32_SCALES[0], 0), (F32_SCALES[1], 0), (F32_SCALES[2], 0),
           [76, 44, 38, -76, -44, -38, 11, 19, 22, 1, -1, 127, -128, 55, 3, 100])
# SUB quantization where SaturatingRoundingDoublingHighMul meets a tie on the second input (-224 =
# -124 - 100): rescaling it and subtracting differs from adding it rescaled by the negated
# multiplier (ties round up, not away from zero) at x - 61 = -189 (x = -128)
SUB_TIE = ("SUB", (0.09959761798381805, 61), (0.08064030855894089, 100), (0.03537306189537048, 0),
           [-124, -128, 127, 0, 100, 99, 101, -1, 50, -50, 30, -30, 10, -10, 77, -77])
# nearest-neighbour sizes whose source indices differ when computed in double instead of float32:
# (in 14 -> out 23, align_corners) and (16 -> 23) ... on a [1, 14, 16, 2] input
NEAREST_F32_SHAPE = (1, 14, 16, 2)
NEAREST_F32_CASES = [((23, 23), True, False), ((12, 12), True, True), ((24, 30), True, True)]

GRAPHS = {
    "mul": graphs.mul_graph,
    "mul-float32": lambda: graphs.column_graph(*MUL_F32),
    "mul-left-shift": lambda: (graphs.single_graph("MUL", ((1, 4, 5, 3), (1, 5, 1)), (0.05, 0.01, 0.0003),
                                                   values=(-6, 7)), [("x * c, multiplier 1.67", 60)]),
    "sub": graphs.sub_graph,
    "sub-tie": lambda: graphs.column_graph(*SUB_TIE),
    "minmax": graphs.minmax_graph,
    "nearest": lambda: graphs.resize_graph("RESIZE_NEAREST_NEIGHBOR"),
    "nearest-float32": lambda: graphs.resize_graph("RESIZE_NEAREST_NEIGHBOR", NEAREST_F32_CASES, NEAREST_F32_SHAPE),
    "bilinear": lambda: graphs.resize_graph("RESIZE_BILINEAR"),
    "arith": graphs.arith_graph,
}
# graph -> C calls its library must make
KERNEL_CALLS = {"mul": {"ep_mul_s8(": 9}, "mul-float32": {"ep_mul_s8(": 1}, "mul-left-shift": {"ep_mul_s8(": 1},
                "sub": {"ep_sub_s8(": 7}, "sub-tie": {"ep_sub_s8(": 1},
                "minmax": {"ep_maximum_s8(": 4, "ep_minimum_s8(": 3},
                "nearest": {"ep_resize_nearest_s8(": len(graphs.NEAREST_CASES)},
                "nearest-float32": {"ep_resize_nearest_s8(": len(NEAREST_F32_CASES)},
                "bilinear": {"ep_resize_bilinear_s8(": len(graphs.BILINEAR_CASES)},
                "arith": {"ep_mul_s8(": 1, "ep_sub_s8(": 1, "ep_maximum_s8(": 1, "ep_minimum_s8(": 1,
                          "ep_resize_nearest_s8(": 1, "ep_resize_bilinear_s8(": 2}}
QEMU_BOARDS = ("microbit", "mps2-an386")  # Cortex-M0, Cortex-M4


def test_mul_multiplier_in_float32():
    """mul.cc multiplies and divides the C float scales: float32 arithmetic, then QuantizeMultiplier."""
    assert mul_multiplier(*F32_SCALES) == (2022898816, -3)
    a, b, out = F32_SCALES
    assert requant.quantize_multiplier(a * b / out) == (2022898765, -3)  # in double: another multiplier
    assert mul_multiplier(0.5, 0.25, 0.0625) == requant.quantize_multiplier(2.0) == (1 << 30, 2)


def test_mul_product_bound():
    assert mul_product_bound(0, 0) == 128 * 128
    assert mul_product_bound(128, 0) == 255 * 128  # zero point -128: x + 128 up to 255
    assert mul_product_bound(-127, 128) == 255 * 255


def test_nearest_indices():
    """GetNearestNeighbor: floor of the scaled position, std::round (halves away from zero) with
    align_corners, half-pixel offsets, clamped into the input."""
    np.testing.assert_array_equal(nearest_indices(4, 8, False, False), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(nearest_indices(4, 7, True, False), [0, 1, 1, 2, 2, 3, 3])  # 0.5 -> 1
    np.testing.assert_array_equal(nearest_indices(6, 4, False, False), [0, 1, 3, 4])
    np.testing.assert_array_equal(nearest_indices(4, 8, False, True), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(nearest_indices(5, 3, True, True), [1, 3, 4])  # round(2.5 * 2) clamped
    np.testing.assert_array_equal(nearest_indices(3, 1, True, False), [0])
    for in_size in range(1, 12):
        for out_size in range(1, 25):
            for align in (False, True):
                for half in (False, True):
                    index = nearest_indices(in_size, out_size, align, half)
                    assert index.shape == (out_size,) and np.all(np.diff(index) >= 0)
                    assert index.min() >= 0 and index.max() <= in_size - 1


def test_bilinear_taps():
    """ResizeBilinearInteger's positions in 1/1024: lower / upper input index and the distance past
    the lower one; before the first pixel centre the distance is negative and both indices 0."""
    for taps, expected in ((bilinear_taps(2, 4, False, False), ([0, 0, 1, 1], [0, 1, 1, 1], [0, 512, 0, 512])),
                           (bilinear_taps(2, 4, False, True), ([0, 0, 0, 1], [0, 1, 1, 1], [-256, 256, 768, 256])),
                           (bilinear_taps(3, 5, True, False), ([0, 0, 1, 1, 2], [0, 1, 1, 2, 2], [0, 512, 0, 512, 0])),
                           (bilinear_taps(6, 3, False, False), ([0, 2, 4], [0, 2, 4], [0, 0, 0]))):
        for got, want in zip(taps, expected):
            np.testing.assert_array_equal(got, want)
    for in_size in range(1, 12):
        for out_size in range(1, 40):
            for align, half in ((False, False), (True, False), (False, True)):
                lower, upper, frac = bilinear_taps(in_size, out_size, align, half)
                assert np.all((0 <= lower) & (lower <= upper) & (upper <= in_size - 1))
                assert np.all((-512 <= frac) & (frac < 1024))  # the kernel's int32 bound relies on it
                assert np.all(lower[frac < 0] == 0) and np.all(upper[frac < 0] == 0)
    with pytest.raises(ValueError, match="reads past the input"):
        bilinear_taps(1, 2040, False, False)  # the rounded scale times 2039 reaches row 1


def column_operands(case) -> tuple[np.ndarray, np.ndarray]:
    """The int8 operands of a column_graph case, less their zero points, for every_value_per_column."""
    _, (_, x_zero), (_, c_zero), _, values = case
    return every_value_per_column().astype(np.int64) - x_zero, np.array(values, np.int64) - c_zero


@needs_litert
def test_mul_multiplier_in_float32_is_what_litert_runs():
    """The products +-836 give LiteRT's output with the float32 multiplier only."""
    (ref,) = litert_reference(graphs.column_graph(*MUL_F32)[0], every_value_per_column())
    x, c = column_operands(MUL_F32)

    def output(multiplier_shift):
        return np.clip(requant.multiply_by_quantized_multiplier(x * c, *multiplier_shift), -128, 127)

    np.testing.assert_array_equal(output(mul_multiplier(*F32_SCALES)), ref)
    a, b, out = F32_SCALES
    assert np.any(output(requant.quantize_multiplier(a * b / out)) != ref)


@needs_litert
def test_sub_rescales_each_input_then_subtracts():
    """LiteRT's int8 SUB is ADD's scheme with the rescaled second input subtracted, which is not
    ADD with the second multiplier negated (ep_arith.c's ep_sub_row)."""
    (ref,) = litert_reference(graphs.column_graph(*SUB_TIE)[0], every_value_per_column())
    x, c = column_operands(SUB_TIE)
    (scale1, _), (scale2, _), (scale_out, _) = SUB_TIE[1:4]
    p = requant.add_params(scale1, scale2, scale_out)
    scaled1 = requant.multiply_by_quantized_multiplier(x << 20, p["input1_multiplier"], p["input1_shift"])
    scaled2 = requant.multiply_by_quantized_multiplier(c << 20, p["input2_multiplier"], p["input2_shift"])
    negated = requant.rounding_divide_by_pot(
        requant.saturating_rounding_doubling_high_mul(c << 20, -p["input2_multiplier"]), -p["input2_shift"])

    def output(difference):
        return np.clip(requant.multiply_by_quantized_multiplier(difference, p["output_multiplier"],
                                                                p["output_shift"]), -128, 127)

    np.testing.assert_array_equal(output(scaled1 - scaled2), ref)
    assert np.any(output(scaled1 + negated) != ref)


def nearest_indices_in_double(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool):
    """GetNearestNeighbor's formula in double precision (what LiteRT does not do)."""
    scale = (in_size - 1) / (out_size - 1) if align_corners and out_size > 1 else in_size / out_size
    position = (np.arange(out_size) + (0.5 if half_pixel_centers else 0.0)) * scale
    index = np.minimum(np.floor(position + 0.5) if align_corners else np.floor(position), in_size - 1)
    return np.maximum(index, 0) if half_pixel_centers else index


@needs_litert
def test_nearest_indices_in_float32_are_what_litert_runs():
    """NEAREST_F32_CASES pick other source pixels in double; LiteRT's are the float32 ones."""
    tflite, segments = graphs.resize_graph("RESIZE_NEAREST_NEIGHBOR", NEAREST_F32_CASES, NEAREST_F32_SHAPE)
    x = arith_inputs(tflite, 4)
    (ref,) = litert_reference(tflite, x)
    pieces = np.split(ref.reshape(len(x), -1), np.cumsum([size for _, size in segments])[:-1], axis=1)
    for ((out_h, out_w), align, half), piece in zip(NEAREST_F32_CASES, pieces):
        rows, cols = (nearest_indices(n, o, align, half) for n, o in ((14, out_h), (16, out_w)))
        np.testing.assert_array_equal(x[:, 0][:, rows][:, :, cols].reshape(len(x), -1), piece)
        assert np.any(nearest_indices_in_double(14, out_h, align, half) != rows)
        assert np.any(nearest_indices_in_double(16, out_w, align, half) != cols)


@needs_litert
@pytest.mark.parametrize("case, reason", [
    (("RESIZE_BILINEAR", ((1, 4, 4, 2),), (0.05,)), "align_corners with half_pixel_centers"),
    (("SUB", ((1, 4), (4,)), (1.0, 1.0, 1e-8)), r"outside \(0, 1\) in ADD's scheme"),
    (("MUL", ((1, 4), (4,)), (1.0, 1.0, 1e-6)), "overflows int32"),
    (("MUL", ((1, 1, 1, 1, 1, 2, 3), (3,)), (0.05, 0.01, 0.05)), "broadcast over 7 dimensions"),
])
def test_refused(case, reason, tmp_path):
    """What the library cannot do as LiteRT does is refused before anything is written."""
    op, shapes, scales = case
    tflite = graphs.single_graph(op, shapes, scales, align=True, half=True)
    with pytest.raises(UnsupportedOpError, match=reason):
        generate_library(tflite, "m", tmp_path / "lib")
    assert not (tmp_path / "lib").exists()


# ------------------------------------------------------------------ against LiteRT

def every_value_per_column() -> np.ndarray:
    """16 samples of int8 [16, 16] in which every column takes all 256 int8 values."""
    s, i, j = np.meshgrid(np.arange(16), np.arange(16), np.arange(16), indexing="ij")
    return ((s * 16 + i + j) % 256 - 128).astype(np.int8)


def arith_inputs(tflite: bytes, n: int = SAMPLES, seed: int = 5) -> np.ndarray:
    """Random int8 inputs, the first all -128, the second all 127, the third alternating."""
    graph = read_tflite(tflite)
    shape = graph.tensors[graph.inputs[0]].shape
    if tuple(shape) == (16, 16):
        return every_value_per_column()
    x = np.random.default_rng(seed).integers(-128, 128, (n, *shape)).astype(np.int8)
    x[0], x[1] = -128, 127
    x[2].reshape(-1)[:] = np.where(np.arange(x[2].size) % 2, 127, -128)
    return x


def check_spread(ref: np.ndarray, segments) -> None:
    """Each op instance's slice of the output takes many int8 values: a comparison worth making."""
    flat, start = ref.reshape(len(ref), -1), 0
    for label, size in segments:
        distinct = len(np.unique(flat[:, start:start + size]))
        assert distinct >= MIN_DISTINCT, f"{label}: only {distinct} distinct outputs"
        start += size
    assert start == flat.shape[1]


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("name", GRAPHS)
def test_bit_exact_on_the_host(name, tmp_path):
    tflite, segments = GRAPHS[name]()
    inputs = arith_inputs(tflite)
    (ref,) = litert_reference(tflite, inputs)
    check_spread(ref, segments)
    generate_library(tflite, "m", tmp_path / "lib")
    source = (tmp_path / "lib" / "m.c").read_text()
    for call, count in KERNEL_CALLS[name].items():
        assert source.count(call) == count, call
    for variant in DSP_VARIANTS.values():
        got = run_c(tmp_path / "lib", "m", "m_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path,
                    variant)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("board", QEMU_BOARDS)
def test_bit_exact_in_qemu(board, tmp_path):
    """All six ops in one library, built -Wall -Wextra -Werror for the core and run in QEMU."""
    tflite, segments = graphs.arith_graph()
    inputs = arith_inputs(tflite)
    (ref,) = litert_reference(tflite, inputs)
    check_spread(ref, segments)
    generate_library(tflite, "m", tmp_path / "lib")
    fw = build_firmware(tmp_path / "lib", "m", board, tmp_path / "build")
    got = run_qemu(fw, inputs.reshape(len(inputs), -1))
    np.testing.assert_array_equal(got, ref.reshape(len(ref), -1))
