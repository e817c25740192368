"""Float ops an int8 .tflite keeps between a DEQUANTIZE and a QUANTIZE (a PReLU as litert-torch
writes it, a select, a leaky ReLU) become int8 tables in the C library, bit-exact with LiteRT's
reference kernels; an island with an op whose float result is not exactly known is refused."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DSP_VARIANTS, litert_outputs, needs_arm_gcc, needs_gcc, needs_litert, run_c

from edgeport.errors import UnsupportedOpError
from edgeport.mcu.compiler.codegen import generate_library
from edgeport.mcu.compiler.lowering_islands import dequantize, quantize
from testmodels.tflite_graphs import GraphBuilder, schema

SHAPE = (1, 4, 5, 6)
SAMPLES = 16


def _float(g: GraphBuilder, op: str, inputs, name: str, options=None, dtype: str = "float32") -> int:
    out = g._add(name, SHAPE, dtype)
    g.op(op, inputs, [out], options)
    return out


def _quantized(g: GraphBuilder, value: int, name: str, scale: float, zero_point: int) -> int:
    out = g.activation(name, SHAPE, scale, zero_point)
    g.op("QUANTIZE", [value], [out], schema.QuantizeOptionsT())
    return out


def island_graph(kind: str) -> bytes:
    """int8 [1, 4, 5, 6] -> DEQUANTIZE -> float ops -> QUANTIZE -> int8 output(s).

    prelu: RELU(x) - alpha * RELU(-x), alpha per channel (litert-torch's PReLU);
    select: x > 0 ? x : x * alpha (per channel), LEAKY_RELU, ADD with RELU6, and the dequantized
        input quantized again on its own (a second output, a table without float ops);
    exp: an EXP among them (not folded).
    """
    g = GraphBuilder(seed=5)
    x = g.activation("x", SHAPE, 0.04, 7)
    f = g._add("x_float", SHAPE, "float32")
    g.op("DEQUANTIZE", [x], [f], schema.DequantizeOptionsT())
    alpha = g.const("alpha", np.linspace(-0.3, 0.7, SHAPE[-1]).astype(np.float32))
    outputs = []
    if kind == "prelu":
        minus = g.const("minus_one", np.array(-1.0, np.float32))
        negative = _float(g, "RELU", [_float(g, "MUL", [f, minus], "neg", schema.MulOptionsT())], "relu_neg")
        scaled = _float(g, "MUL", [negative, alpha], "scaled", schema.MulOptionsT())
        y = _float(g, "SUB", [_float(g, "RELU", [f], "relu"), scaled], "prelu", schema.SubOptionsT())
        outputs.append(_quantized(g, y, "y", 0.03, -20))
    else:
        positive = _float(g, "GREATER", [f, g.const("zero", np.array(0.0, np.float32))], "positive", dtype="bool")
        chosen = _float(g, "SELECT_V2", [positive, f, _float(g, "MUL", [f, alpha], "slope", schema.MulOptionsT())],
                        "where")
        leaky = schema.LeakyReluOptionsT()
        leaky.alpha = 0.1
        y = _float(g, "LEAKY_RELU", [chosen], "leaky", leaky)
        add = schema.AddOptionsT()
        add.fusedActivationFunction = 3  # RELU6
        y = _float(g, "ADD", [y, g.const("shift", np.array(0.5, np.float32))], "shifted", add)
        if kind == "exp":
            y = _float(g, "EXP", [y], "exp")
        outputs += [_quantized(g, y, "y", 0.025, -128), _quantized(g, f, "x_again", 0.05, 3)]
    return g.build([x], outputs)


def test_the_python_dequantize_and_quantize_round_as_litert():
    q = np.arange(-128, 128)
    assert dequantize(q, 0.1, 3).dtype == np.float32
    assert dequantize(np.array([13]), 0.1, 3)[0] == np.float32(np.float64(np.float32(0.1)) * 10)
    halves = np.array([0.25, -0.25, 0.75, -0.75, 1000.0, -1000.0], np.float32)  # 0.5 steps round away from 0
    np.testing.assert_array_equal(quantize(halves, 0.5, 0), [1, -1, 2, -2, 127, -128])


@needs_litert
def test_an_island_with_an_inexact_op_is_left_and_refused_by_name(tmp_path):
    with pytest.raises(UnsupportedOpError, match="DEQUANTIZE|EXP|GREATER"):
        generate_library(island_graph("exp"), "m", tmp_path / "lib")
    assert not (tmp_path / "lib").exists()


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
@pytest.mark.parametrize("kind", ["prelu", "select"])
def test_float_islands_become_tables_bit_exact_on_the_host(kind, variant, tmp_path):
    tflite = island_graph(kind)
    every_value = np.resize(np.arange(-128, 128), (6, *SHAPE))  # each int8 value in each channel
    inputs = [np.concatenate([np.random.default_rng(0).integers(-128, 128, (SAMPLES, *SHAPE)),
                              every_value, np.roll(every_value, 1, axis=-1)]).astype(np.int8)]
    want = litert_outputs(tflite, inputs)
    assert all(len(np.unique(w)) > 40 for w in want)
    info = generate_library(tflite, "m", tmp_path / "lib")
    source = (tmp_path / "lib" / "m.c").read_text()
    assert "ep_lut_channels_s8(" in source and "ep_dequantize" not in source
    assert len(info.tables) == 1 and "a table per channel" in info.tables[0]
    got = run_c(tmp_path / "lib", "m", "m_invoke_packed" if len(want) > 1 else "m_invoke", "int8_t", "int8_t",
                inputs[0], (sum(w[0].size for w in want),), np.int8, tmp_path, DSP_VARIANTS[variant])
    np.testing.assert_array_equal(got, np.concatenate([w.reshape(len(w), -1) for w in want], axis=1))


@pytest.mark.e2e
@needs_litert
@needs_arm_gcc
@pytest.mark.parametrize("board", ["microbit", "mps2-an386"])  # Cortex-M0, M4
def test_float_islands_become_tables_bit_exact_in_qemu(board, tmp_path):
    from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu

    tflite = island_graph("select")
    x = np.random.default_rng(1).integers(-128, 128, (SAMPLES, *SHAPE)).astype(np.int8)
    want = np.concatenate([w.reshape(len(w), -1) for w in litert_outputs(tflite, [x])], axis=1)
    generate_library(tflite, "m", tmp_path / "lib")
    firmware = build_firmware(tmp_path / "lib", "m", board, tmp_path / "build")
    np.testing.assert_array_equal(run_qemu(firmware, x.reshape(SAMPLES, -1)), want)
