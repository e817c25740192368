"""The activation ops of the Cortex-M C library (lowering_activation, kernels/ep_activation.c): PRELU,
LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH on int8, bit-exact with LiteRT's reference kernels.

The pure arithmetic (float32 Prepare ratios, gemmlowp int16 helpers, table order, PRELU's broadcast
walk, the tables against the real functions); each op's 256-entry table against LiteRT on every
int8 input, over many quantizations (no C); libraries compiled on the host (plain C and the DSP
path emulated), and the chain of all five ops built for Cortex-M0 and M4 and run in QEMU, compared
byte for byte with LiteRT; what is refused, and that nothing is written then.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from edgeport.errors import UnsupportedOpError
from edgeport.mcu.compiler import lowering_activation as act
from edgeport.mcu.compiler.codegen import generate_library
from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu, toolchain_missing

from conftest import DSP_VARIANTS, litert_reference, needs_arm_gcc, needs_gcc, needs_litert, run_c
from testmodels import tflite_activation_graphs as graphs

F32 = np.float32
MISSING = toolchain_missing()
needs_toolchain = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
BOARDS = {"cortex-m0": "microbit", "cortex-m4": "mps2-an386"}
INT8 = np.arange(-128, 128)

# op -> cases: (input (scale, zero point), output (scale, zero point)[, LEAKY_RELU's alpha]). Scales
# both ways round (multipliers > 1 and < 1), zero points at the int8 edges, LEAKY_RELU's alpha
# negative, 0, > 1; HARD_SWISH's relu-ish multiplier shifting left and right.
TABLE_CASES = {
    "TANH": [((0.02, 5), (1 / 128, 0)), ((0.1, -20), (0.01, 3)), ((0.004, 0), (1 / 128, 0)),
             ((0.01, 127), (1 / 128, 0)), ((0.015, -128), (1 / 128, 0)), ((0.012, 0), (1 / 128, 127))],
    "LOGISTIC": [((0.05, -3), (1 / 256, -128)), ((0.1, 20), (1 / 256, 0)), ((0.01, 0), (1 / 256, -128)),
                 ((0.03, -128), (1 / 256, -128)), ((0.04, 127), (1 / 256, 10))],
    "HARD_SWISH": [((0.05, 3), (0.03, -50)), ((0.005, -10), (0.004, -20)), ((0.1, 0), (0.2, 0)),
                   ((0.04, 127), (0.003, 100)), ((0.03, -128), (0.05, -90)), ((0.008, 20), (0.002, -128))],
    "LEAKY_RELU": [((0.05, 3), (0.03, -50), 0.1), ((0.02, -10), (0.05, 20), -0.5), ((0.05, 0), (0.05, 0), 1.7),
                   ((0.03, 127), (0.02, 127), 0.5), ((0.04, -128), (0.07, 0), 0.0), ((0.01, 5), (0.004, 9), 0.3)],
}
TABLES = {"TANH": act.tanh_table, "LOGISTIC": act.logistic_table, "HARD_SWISH": act.hard_swish_table,
          "LEAKY_RELU": act.leaky_relu_table}
# the C library: two cases per table op (the kernel is one lookup), and PRELU's broadcasts:
# alpha shape, input (scale, zero point), alpha (scale, zero point), output (scale, zero point)
HOST_CASES = [(op, case) for op, cases in TABLE_CASES.items() for case in cases[:2]]
PRELU_CASES = [
    ((1, 1, 4), (0.05, 3), (0.004, -10), (0.03, -20)),     # per channel, identity multiplier > 1
    ((4,), (0.02, -128), (0.01, 5), (0.05, 10)),           # per channel, rank 1; multipliers < 1
    ((1, 8, 8, 4), (0.04, 127), (0.02, 0), (0.01, -60)),   # no broadcast, alpha multiplier > 1
    ((1,), (0.05, 0), (0.003, -128), (0.04, 0)),           # one alpha
    ((8, 1, 1), (0.03, -7), (0.006, 20), (0.02, 30)),      # along rows, not channels
]


def sweep_inputs(shape, n_random: int = 6, seed: int = 0) -> np.ndarray:
    """int8 samples of `shape`: -128..127 repeated and shifted by 0..C-1 places (a 256-element
    tensor of C channels then sees every value in every channel), all -128, all 127, random ones."""
    size, channels = int(np.prod(shape)), shape[-1]
    rows = [np.resize(np.roll(INT8, k), size) for k in range(channels)]
    rows += [np.full(size, -128), np.full(size, 127)]
    rows += list(np.random.default_rng(seed).integers(-128, 128, (n_random, size)))
    return np.array(rows, np.int8).reshape(-1, *shape)


def table_graph(op: str, case: tuple) -> bytes:
    return graphs.activation_graph(op, case[0], case[1], *case[2:])


def check_on_host(tflite: bytes, inputs: np.ndarray, tmp_path, kernel: str, min_distinct: int = 20) -> None:
    """LiteRT's outputs (many distinct values) == the generated library's, plain C and DSP emulated."""
    (ref,) = litert_reference(tflite, inputs)
    assert len(np.unique(ref)) >= min_distinct, "degenerate reference outputs"
    generate_library(tflite, "m", tmp_path / "lib")
    assert f"{kernel}(" in (tmp_path / "lib" / "m.c").read_text()
    for variant in DSP_VARIANTS.values():
        got = run_c(tmp_path / "lib", "m", "m_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path,
                    variant)
        np.testing.assert_array_equal(got, ref)


# ------------------------------------------------------------------ pure functions

def test_prepare_ratio_rounds_each_step_to_float32():
    """LiteRT's Prepare computes `in_scale * alpha / out_scale` on floats: other multipliers than
    the same ratio in double."""
    a, alpha, c = float(F32(0.05)), 0.1, float(F32(0.03))
    assert act.prepare_ratio(a, alpha, divisor=c) == float(F32(F32(F32(a) * F32(alpha)) / F32(c)))
    assert act.prepare_ratio(a, divisor=c) == float(F32(a) / F32(c))
    assert act.prepare_ratio(a, divisor=c) != a / c
    assert act.prelu_multipliers(a, 1.0, c)["identity_multiplier"] == 1789569792  # double: 1789569773


def test_int16_fixed_point_helpers():
    # x / 2 rounded: ties up for a positive product, toward zero for a negative one (gemmlowp's nudge)
    assert act._srdhm16(np.array([-32768, 16384, 3, -3, -5]), 16384).tolist() == [-16384, 8192, 2, -1, -2]
    assert int(act._srdhm16(-32768, -32768)) == 32767  # -1 * -1 saturates
    assert act._c_divide([-7, 7, -8], 4).tolist() == [-1, 1, -2]
    assert act._int16([32768, -32769, 5]).tolist() == [-32768, 32767, 5]
    assert act._saturating_left_shift16([300, -300, 5], 7).tolist() == [32767, -32768, 640]
    assert act._downscale_to_int16(1 << 30) == 16384 and act._downscale_to_int16((1 << 31) - 1) == 32767
    assert act._downscale_to_int16((1 << 30) + (1 << 15)) == 16385  # rounds half up


def test_tables_follow_the_real_functions():
    """Each table is the op's real function quantized, within one step (HARD_SWISH's int16 fixed
    point: two), and exact for most inputs."""
    x = INT8.astype(np.float64)
    cases = [  # table, real value on the output's int8 scale, tolerance in steps, monotone
        (act.tanh_table(0.02, 5, 1 / 128, 0), np.tanh(0.02 * (x - 5)) * 128, 1, True),
        (act.logistic_table(0.05, -3, 1 / 256, -128), 256 / (1 + np.exp(-0.05 * (x + 3))) - 128, 1, True),
        (act.leaky_relu_table(0.05, 3, 0.03, -50, -0.5),
         np.where(x >= 3, 1.0, -0.5) * 0.05 * (x - 3) / 0.03 - 50, 1, False),
        (act.hard_swish_table(0.05, 3, 0.03, -50),
         0.05 * (x - 3) * np.clip(0.05 * (x - 3) + 3, 0, 6) / 6 / 0.03 - 50, 2, False),
    ]
    for table, real, tolerance, monotone in cases:
        expected = np.clip(np.round(real), -128, 127)
        assert table.dtype == np.int8 and table.shape == (256,)
        assert np.max(np.abs(table - expected)) <= tolerance
        assert np.mean(table == expected) > 0.9
        assert not monotone or np.all(np.diff(table.astype(int)) >= 0)


def test_c_table_order_is_indexed_by_the_input_byte():
    table = act.c_table_order(INT8.astype(np.int8))
    assert [table[x & 0xFF] for x in (-128, -1, 0, 1, 127)] == [-128, -1, 0, 1, 127]


def test_prelu_walks_alpha_over_the_input():
    assert act.prelu_walk((1, 8, 8, 4), (1, 1, 4)) == ([64, 4], [0, 1])
    assert act.prelu_walk((1, 8, 8, 4), (4,)) == ([64, 4], [0, 1])
    assert act.prelu_walk((1, 8, 8, 4), (1, 8, 8, 4)) == ([256], [1])
    assert act.prelu_walk((1, 8, 8, 4), (1,)) == ([256], [0])
    assert act.prelu_walk((1, 8, 8, 4), (8, 1, 1)) == ([8, 32], [1, 0])
    assert act.prelu_walk((1, 8, 4), (1, 8, 8, 4)) is None  # would widen the output
    assert act.prelu_walk((1, 8, 4), (3,)) is None


def test_what_the_tables_refuse():
    with pytest.raises(ValueError, match="1/256"):
        act.logistic_table(0.05, 0, 1 / 128, 0)
    with pytest.raises(ValueError, match="LiteRT refuses"):
        act.hard_swish_table(0.5, 0, 0.003, 0)  # output multiplier 0.5 / 128 / 0.003 > 1
    with pytest.raises(ValueError, match="too far apart"):
        act.hard_swish_table(0.001, 0, 50.0, 0)
    with pytest.raises(ValueError, match="overflows int32"):
        act.tanh_table(0.05, 0, 1e-10, 0)


# ------------------------------------------------------------------ the tables against LiteRT

@needs_litert
@pytest.mark.parametrize("op, case", [(op, case) for op, cases in TABLE_CASES.items() for case in cases])
def test_tables_equal_litert_on_every_int8_input(op, case):
    (ref,) = litert_reference(table_graph(op, case), INT8.astype(np.int8).reshape(1, *graphs.SHAPE))
    assert len(np.unique(ref)) >= 25
    np.testing.assert_array_equal(TABLES[op](*case[0], *case[1], *case[2:]), ref.ravel())


# ------------------------------------------------------------------ the C library on the host

@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("op, case", HOST_CASES)
def test_table_ops_are_bit_exact(op, case, tmp_path):
    check_on_host(table_graph(op, case), sweep_inputs(graphs.SHAPE), tmp_path, "ep_lut_s8")


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("alpha_shape, input_q, alpha_q, output_q", PRELU_CASES)
def test_prelu_is_bit_exact(alpha_shape, input_q, alpha_q, output_q, tmp_path):
    """Every int8 input against every alpha of its channel (alpha broadcast as LiteRT does)."""
    tflite = graphs.prelu_graph(alpha_shape, input_q, alpha_q, output_q)
    check_on_host(tflite, sweep_inputs(graphs.SHAPE), tmp_path, "ep_prelu_s8", min_distinct=100)


@pytest.mark.e2e
@needs_litert
@needs_gcc
def test_the_chain_runs_in_place(tmp_path):
    """All five ops one after the other: bit-exact, and each op writes over its input (the arena
    holds one tensor)."""
    tflite = graphs.activations_chain_graph()
    check_on_host(tflite, sweep_inputs((1, 6, 5, 8), n_random=20), tmp_path, "ep_prelu_s8", min_distinct=80)
    header = (tmp_path / "lib" / "m.h").read_text()
    assert "#define M_ARENA_SIZE 240" in header


# ------------------------------------------------------------------ Cortex-M

@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("cpu", BOARDS)
def test_the_chain_is_bit_exact_in_qemu(cpu, tmp_path):
    tflite = graphs.activations_chain_graph()
    inputs = sweep_inputs((1, 6, 5, 8), n_random=10, seed=1)
    (ref,) = litert_reference(tflite, inputs)
    assert len(np.unique(ref)) >= 80
    generate_library(tflite, "m", tmp_path / "lib")
    fw = build_firmware(tmp_path / "lib", "m", BOARDS[cpu], tmp_path / "build")
    got = run_qemu(fw, inputs.reshape(len(inputs), -1))
    np.testing.assert_array_equal(got, ref.reshape(len(ref), -1))


@pytest.mark.e2e
@needs_litert
@needs_arm_gcc
@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m4"])
def test_builds_warning_free_for_cortex_m(cpu, tmp_path):
    generate_library(graphs.activations_chain_graph(), "m", tmp_path)
    for source in (tmp_path / "m.c", tmp_path / "ep_activation.c"):
        result = subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-mcpu={cpu}", "-mthumb", "-Os", "-c", "-Wall",
                                 "-Wextra", "-Werror", "-o", str(tmp_path / f"{source.stem}.o"), str(source)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ refused, before anything is written

@needs_litert
@pytest.mark.parametrize("tflite, detail", [
    (lambda: graphs.activation_graph("LOGISTIC", (0.05, 0), (1 / 128, 0)), "LiteRT requires 1/256"),
    (lambda: graphs.activation_graph("HARD_SWISH", (0.5, 0), (0.003, 0)), "LiteRT refuses it"),
    (lambda: graphs.prelu_graph((1, 1, 4), (0.05, 0), (0.01, 0), (0.03, 0), alpha_scales=[0.01, 0.02, 0.01, 0.03]),
     "quantized per channel"),
])
def test_refused_configurations_are_named(tflite, detail, tmp_path):
    model = tflite()
    with pytest.raises(UnsupportedOpError, match=detail) as err:
        generate_library(model, "m", tmp_path / "lib")
    assert err.value.where == "no Cortex-M C kernel in edgeport"
    assert not (tmp_path / "lib").exists()
