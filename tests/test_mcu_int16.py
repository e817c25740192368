"""The int16x8 layers of the Cortex-M C library (lowering_int16, kernels/ep_int16.c): CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, pooling, MEAN, RESHAPE on int16 activations with int8
weights, and the QUANTIZE ops between int8 and int16, bit-exact with LiteRT's reference kernels.

The int8 outputs of a graph see its int16 values only coarsely (one int8 step is ~150 int16 steps),
so the host tests also compare the int16 tensors themselves: the harness includes the generated
`m.c` and, after each invoke, writes out every tensor the arena still holds (no later op wrote over
it), which is checked against LiteRT's preserved tensors. Graphs run on the host (plain C and the
DSP path emulated) and in QEMU on a Cortex-M0 and a Cortex-M4; the digits CNN with one int16 layer,
exported by the CLI, is checked too; and what is refused is named, before anything is written.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from edgeport.errors import UnsupportedOpError
from edgeport.mcu.compiler import lowering_int16 as int16
from edgeport.mcu.compiler.c_text import c_float
from edgeport.mcu.compiler.codegen import KERNEL_DIR, generate_library
from edgeport.mcu.compiler.lowering import Lowering
from edgeport.mcu.compiler.tflite_ir import Graph, read_tflite
from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu, toolchain_missing

from conftest import (
    CALIB,
    CFLAGS,
    DIGITS,
    DSP_VARIANTS,
    check_bit_exact,
    litert_reference,
    needs_arm_gcc,
    needs_gcc,
    needs_litert,
    needs_torch,
    run_cli,
)
from testmodels import tflite_int16_graphs as graphs
from testmodels.tflite_graphs import ops_graph

MISSING = toolchain_missing()
needs_toolchain = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
BOARDS = {"cortex-m0": "microbit", "cortex-m4": "mps2-an386"}
GRAPHS = {"chain": graphs.chain_graph, "variants": graphs.variants_graph, "edge": graphs.edge_graph,
          "pot_add": graphs.pot_add_graph}

HARNESS = """#include <stdio.h>
#include "m.c"

/* Per sample read from argv[1]: invoke, then write the output and the arena's tensors to argv[2]. */
int main(int argc, char **argv)
{
    static int8_t x[M_INPUT_SIZE], y[M_OUTPUT_SIZE];
    FILE *in, *out;
    if (argc != 3 || !(in = fopen(argv[1], "rb")) || !(out = fopen(argv[2], "wb"))) return 2;
    while (fread(x, 1, sizeof x, in) == sizeof x) {
        if (m_invoke(x, y) != 0) return 4;
        fwrite(y, 1, sizeof y, out);
@dumps@    }
    fclose(in);
    return fclose(out) != 0;
}
"""


def sample_inputs(shape, n: int = 24, seed: int = 0) -> np.ndarray:
    """int8 samples: all -128, all 127, the two alternating, then random ones."""
    size = int(np.prod(shape))
    rows = [np.full(size, -128), np.full(size, 127), np.resize([-128, 127], size), np.resize([127, -128], size)]
    rows += list(np.random.default_rng(seed).integers(-128, 128, (n - len(rows), size)))
    return np.array(rows, np.int8).reshape(-1, *shape)


def arena_tensors(graph: Graph, c_source: str) -> dict[int, int]:
    """Tensor -> arena offset, for the op outputs no later op writes over (each kernel writes its
    output, its last pointer argument, and nothing else in the arena: true of these graphs' ops)."""
    written = []  # (tensor, offset) in op order
    for index, code in re.findall(r"/\* op (\d+) \w+:.*\*/\n    (.*)\n", c_source):
        last = re.search(r"\(arena \+ (\d+)\)\);$", code)
        if last:
            written.append((graph.ops[int(index)].outputs[0], int(last.group(1))))
    intact = {}
    for k, (tensor, offset) in enumerate(written):
        end = offset + graph.tensors[tensor].nbytes
        if all(o + graph.tensors[t].nbytes <= offset or o >= end for t, o in written[k + 1:]):
            intact[tensor] = offset
    return intact


def check_with_tensors(tflite: bytes, inputs: np.ndarray, tmp_path, min_checked: int = 2) -> dict[int, int]:
    """The library's outputs and the int16 tensors left in its arena == LiteRT's, for every DSP
    variant. Returns the tensors checked (tensor -> offset)."""
    lib = tmp_path / "lib"
    generate_library(tflite, "m", lib)
    graph = read_tflite(tflite)
    intact = {t: o for t, o in arena_tensors(graph, (lib / "m.c").read_text()).items()
              if graph.tensors[t].dtype == "int16"}
    assert len(intact) >= min_checked, f"only {len(intact)} int16 tensors to check"
    ref, *tensors = litert_reference(tflite, inputs, tuple(intact))
    assert len(np.unique(ref)) > 20, "degenerate reference outputs"
    dumps = "".join(f"        fwrite(arena + {o}, 1, {graph.tensors[t].nbytes}, out);\n" for t, o in intact.items())
    (tmp_path / "harness.c").write_text(HARNESS.replace("@dumps@", dumps))
    (tmp_path / "in.bin").write_bytes(inputs.tobytes())
    sizes = [ref[0].nbytes] + [graph.tensors[t].nbytes for t in intact]
    for flags in DSP_VARIANTS.values():
        exe = tmp_path / "harness.exe"
        sources = [str(p) for p in sorted(lib.glob("ep_*.c"))]
        build = subprocess.run(["gcc", *CFLAGS, *flags, f"-I{lib}", "-o", str(exe), str(tmp_path / "harness.c"),
                                *sources], capture_output=True, text=True, check=False)
        assert build.returncode == 0, build.stderr
        run = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], capture_output=True,
                             timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        data = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.uint8).reshape(len(inputs), sum(sizes))
        parts = np.split(data, np.cumsum(sizes)[:-1], axis=1)
        np.testing.assert_array_equal(parts[0].view(np.int8).reshape(ref.shape), ref)
        for part, expected in zip(parts[1:], tensors):
            np.testing.assert_array_equal(part.copy().view(expected.dtype).reshape(expected.shape), expected)
    return intact


# ------------------------------------------------------------------ pure functions

def test_checked_log2_follows_litert_tolerance():
    assert int16.checked_log2(2.0 ** -10) == -10
    assert int16.checked_log2(2.0 ** -12 * 1.0005) == -12  # within 1e-3 in log2: LiteRT takes it as 2^-12
    assert int16.checked_log2(0.001) is None
    assert int16.checked_log2(2.0 ** -7 * 1.003) is None
    with pytest.raises(ValueError, match="tolerance"):
        int16.checked_log2(2.0 ** (-9 + 1e-3))


def test_accumulator_range_covers_int16_inputs():
    lo, hi = int16.accumulator_range(np.array([[1, -2], [0, 3]], np.int8), np.array([10, -5]))
    assert lo.tolist() == [10 - 32768 - 2 * 32767, -5 - 3 * 32768]
    assert hi.tolist() == [10 + 32767 + 2 * 32768, -5 + 3 * 32767]
    lo, hi = int16.accumulator_range(np.array([[1]], np.int8), None, filter_offset=-3)  # weight - 3 = -2
    assert (lo.tolist(), hi.tolist()) == ([-2 * 32767], [2 * 32768])


@needs_litert
def test_int16_ops_dispatch_to_this_module():
    graph = read_tflite(graphs.layer_graph("add"))
    names = {op.name: int16.int16_lowering(op, graph) for op in graph.ops}
    assert names["CONV_2D"] is int16.lower_conv16 and names["ADD"] is int16.lower_add16
    assert names["QUANTIZE"] is int16.lower_quantize16
    refused = read_tflite(graphs.refused_graph("logistic"))
    logistic = next(op for op in refused.ops if op.name == "LOGISTIC")
    assert int16.int16_lowering(logistic, refused) is None  # the int8 lowering refuses it
    int8_graph = read_tflite(ops_graph())
    assert all(int16.int16_lowering(op, int8_graph) is None for op in int8_graph.ops)


# ------------------------------------------------------------------ the C library on the host

@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("kind", graphs.LAYERS)
def test_layers_are_bit_exact(kind, tmp_path):
    """Each layer between QUANTIZE ops: the int8 output, the int16 input and the layer's int16
    output equal LiteRT's, inputs at the int8 extremes included."""
    tflite = graphs.layer_graph(kind)
    checked = check_with_tensors(tflite, sample_inputs((1, 7, 6, 4)), tmp_path)
    graph = read_tflite(tflite)
    layer = next(op for op in graph.ops if op.name not in ("QUANTIZE", "RESHAPE"))
    assert layer.outputs[0] in checked


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("name", GRAPHS)
def test_graphs_are_bit_exact(name, tmp_path):
    tflite = GRAPHS[name]()
    graph = read_tflite(tflite)
    check_with_tensors(tflite, sample_inputs(graph.tensors[graph.inputs[0]].shape, n=30), tmp_path, min_checked=1)
    source = (tmp_path / "lib" / "m.c").read_text()
    if name == "edge":  # accumulators beyond int32: LiteRT's double rescale
        assert re.search(r"static const double op\d+_scale", source)
    if name == "chain":  # accumulators proven within int32: the exact integer rescale
        assert re.search(r"static const uint64_t op\d+_multiplier", source)
    if name == "pot_add":
        assert "ep_add_pot_s16(" in source


@pytest.mark.e2e
@needs_torch
@needs_litert
@needs_gcc
def test_the_digits_cnn_with_an_int16_layer_is_bit_exact(tmp_path):
    """The CLI's android export with one layer at int16 activations (ai-edge-quantizer writes its
    CONV_2D as int16x8 with QUANTIZE ops around it)."""
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "android", "--quantize", "int8", "--calib", CALIB,
                     "--override", "features.2=int16", "--out", str(out))
    assert result.returncode == 0, result.stderr
    tflite = (out / "android" / "digits.tflite").read_bytes()
    for variant, flags in DSP_VARIANTS.items():
        (tmp_path / variant).mkdir()
        check_bit_exact(tflite, "digits", tmp_path / variant, flags)
    source = (tmp_path / "plain" / "lib" / "digits.c").read_text()
    assert "ep_conv2d_s16(" in source and "ep_requantize_s8_s16(" in source and "ep_requantize_s16_s8(" in source


CONVERSIONS = """#include <stdio.h>
#include "ep_kernels.h"

/* float inputs from argv[1] -> QUANTIZE int16 -> DEQUANTIZE; writes the int16 and float values */
int main(int argc, char **argv)
{
    static float x[@size@], y[@size@];
    static int16_t q[@size@];
    static const ep_affine_params quantize = {@quantize@}, dequantize = {@dequantize@};
    FILE *in, *out;
    if (argc != 3 || !(in = fopen(argv[1], "rb")) || !(out = fopen(argv[2], "wb"))) return 2;
    if (fread(x, sizeof x, 1, in) != 1) return 3;
    ep_quantize_f32_s16(&quantize, x, q);
    ep_dequantize_s16_f32(&dequantize, q, y);
    fwrite(q, sizeof q, 1, out);
    fwrite(y, sizeof y, 1, out);
    fclose(in);
    return fclose(out) != 0;
}
"""


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("scale", [0.001, 3.7e-5, 0.02])
def test_float_conversions_are_bit_exact(scale, tmp_path):
    """QUANTIZE float -> int16 and DEQUANTIZE int16 -> float, the kernels run with the structs
    their lowerings emit (the library interface takes int8 cores only, so no library reaches them
    yet): halfway values round away from zero, values past int16 saturate."""
    tflite = graphs.float_conversion_graph(scale, size=64)
    graph = read_tflite(tflite)
    ctx = Lowering(graph, frozenset())
    structs = [int16.int16_lowering(op, graph)(op, graph, ctx).structs[0] for op in graph.ops]
    rng = np.random.default_rng(2)
    x = (rng.normal(0, 8000, 64) * np.float32(scale)).astype(np.float32)
    x[:8] = ((np.arange(-4, 4) + 0.5) * np.float32(scale)).astype(np.float32)  # halfway between steps
    # past int16 (a quotient past int32 is undefined in LiteRT's cast: x86 gives INT32_MIN, Arm saturates)
    x[8:12] = np.float32([1e7 * scale, -1e7 * scale, 40000 * scale, -40000 * scale])
    ref, q = litert_reference(tflite, x[None], (graph.ops[0].outputs[0],))
    fields = [", ".join(c_float(v) if isinstance(v, np.floating) else str(v) for v in s.fields.values())
              for s in structs]  # ep_affine_params in field order
    (tmp_path / "conv.c").write_text(CONVERSIONS.replace("@size@", "64").replace("@quantize@", fields[0])
                                     .replace("@dequantize@", fields[1]))
    exe = tmp_path / "conv.exe"
    build = subprocess.run(["gcc", *CFLAGS, f"-I{KERNEL_DIR}", "-o", str(exe), str(tmp_path / "conv.c"),
                            str(KERNEL_DIR / "ep_int16.c")], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True, timeout=60)
    data = (tmp_path / "out.bin").read_bytes()
    np.testing.assert_array_equal(np.frombuffer(data[:128], np.int16), q.ravel())
    np.testing.assert_array_equal(np.frombuffer(data[128:], np.uint32), ref.ravel().view(np.uint32))
    assert q.min() == -32768 and q.max() == 32767


# ------------------------------------------------------------------ Cortex-M

@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("cpu", BOARDS)
@pytest.mark.parametrize("name", ["chain", "edge"])
def test_graphs_are_bit_exact_in_qemu(name, cpu, tmp_path):
    tflite = GRAPHS[name]()
    graph = read_tflite(tflite)
    inputs = sample_inputs(graph.tensors[graph.inputs[0]].shape, n=12, seed=1)
    (ref,) = litert_reference(tflite, inputs)
    generate_library(tflite, "m", tmp_path / "lib")
    fw = build_firmware(tmp_path / "lib", "m", BOARDS[cpu], tmp_path / "build")
    got = run_qemu(fw, inputs.reshape(len(inputs), -1))
    np.testing.assert_array_equal(got, ref.reshape(len(ref), -1))


@pytest.mark.e2e
@needs_litert
@needs_arm_gcc
@pytest.mark.parametrize("cpu", BOARDS)
def test_builds_warning_free_for_cortex_m(cpu, tmp_path):
    """The generated source and the int16 kernels at -Os too (the firmware tests build -O2)."""
    generate_library(graphs.variants_graph(), "m", tmp_path)
    result = subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-mcpu={cpu}", "-mthumb", "-Os", "-Wall", "-Wextra",
                             "-Werror", "-c", "m.c", "ep_int16.c"], cwd=tmp_path, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ refused, before anything is written

@needs_litert
@pytest.mark.parametrize("tflite, detail", [
    (lambda: graphs.refused_graph("int32 bias"), "int32 bias"),
    (lambda: graphs.refused_graph("zero point"), "with a zero point"),
    (lambda: graphs.refused_graph("huge bias"), "bias beyond 2"),
    (lambda: graphs.refused_graph("int16 weights"), "int16 filter"),
    (lambda: graphs.refused_graph("constant operand"), "constant int16 operand"),
    (lambda: graphs.refused_graph("logistic"), r"LOGISTIC \(int16\)"),
    (lambda: graphs.pot_add_graph(broadcast=True), "power-of-two int16 ADD with broadcast"),
])
def test_refused_configurations_are_named(tflite, detail, tmp_path):
    model = tflite()
    with pytest.raises(UnsupportedOpError, match=detail) as err:
        generate_library(model, "m", tmp_path / "lib")
    assert err.value.where == "no Cortex-M C kernel in edgeport"
    assert not (tmp_path / "lib").exists()
