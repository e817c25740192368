"""The C library with several inputs and outputs: one pointer per port in `<name>_invoke`, the
ports back to back in `<name>_invoke_packed`, float ports in `<name>_invoke_f32`; bit-exact with
LiteRT's reference kernels on the host, in QEMU on Cortex-M0 and M4, and from `edgeport export`."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import (
    CFLAGS,
    DSP_VARIANTS,
    litert_outputs,
    load_report,
    needs_arm_gcc,
    needs_gcc,
    needs_litert,
    needs_torch,
    run_c,
    run_cli,
)

from edgeport.errors import InputError
from edgeport.mcu.compiler.codegen import generate_library
from testmodels import tflite_graphs

SAMPLES = 24


def port_inputs(float_io: bool, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(SAMPLES, 1, 6, 6, 3), (SAMPLES, 1, 4)]
    if float_io:
        return [rng.normal(0.0, 2.0, shape).astype(np.float32) for shape in shapes]
    return [rng.integers(-128, 128, shape).astype(np.int8) for shape in shapes]


def packed(values: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([v.reshape(len(v), -1) for v in values], axis=1)


@needs_litert
def test_the_header_declares_one_pointer_per_port_in_the_models_order(tmp_path):
    info = generate_library(tflite_graphs.multi_io_graph(float_io=True), "multi", tmp_path)
    header = (tmp_path / "multi.h").read_text()
    assert ("int multi_invoke(const int8_t *input0, const int8_t *input1, int8_t *output0, int8_t *output1, "
            "int8_t *output2);") in header
    assert ("int multi_invoke_f32(const float *input0, const float *input1, float *output0, float *output1, "
            "float *output2);") in header
    assert "int multi_invoke_packed(const int8_t *input, int8_t *output);" in header
    assert " *   input1: 'side' float32 [1, 4] (int8 in multi_invoke)" in header
    for define in ("MULTI_INPUTS 2", "MULTI_OUTPUTS 3", "MULTI_INPUT0_SIZE 108", "MULTI_INPUT1_SIZE 4",
                   "MULTI_INPUT_SIZE 112", "MULTI_OUTPUT0_SIZE 144", "MULTI_OUTPUT_SIZE 154"):
        assert f"#define {define}\n" in header
    assert [p["name"] for p in info.inputs] == ["image", "side"]
    assert [p["shape"] for p in info.outputs] == [[1, 6, 6, 4], [1, 5], [1, 5]]
    assert (info.input_size, info.output_size) == (112, 154)


@needs_litert
def test_an_output_that_is_an_input_is_refused(tmp_path):
    g = tflite_graphs.GraphBuilder()
    x = g.activation("x", (1, 4), 0.1, 0)
    y = g.fully_connected(x, 3)
    with pytest.raises(InputError, match="the output 'x' is an input"):
        generate_library(g.build([x], [y, x]), "m", tmp_path)


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
def test_several_int8_ports_are_bit_exact_on_the_host(variant, tmp_path):
    tflite = tflite_graphs.multi_io_graph()
    inputs = port_inputs(float_io=False)
    want = packed(litert_outputs(tflite, inputs))
    assert len(np.unique(want)) > 20
    generate_library(tflite, "multi", tmp_path / "lib")
    got = run_c(tmp_path / "lib", "multi", "multi_invoke_packed", "int8_t", "int8_t", packed(inputs),
                want.shape[1:], np.int8, tmp_path, DSP_VARIANTS[variant])
    np.testing.assert_array_equal(got, want)


F32_MAIN = """#include <stdio.h>
#include "multi.h"

/* Reads samples of image (108 floats) then side (4), writes the three outputs (144 + 5 + 5). */
int main(int argc, char **argv)
{
    static float x[112], y[154];
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (argc != 3 || !in || !out) return 2;
    while (fread(x, sizeof x[0], 112, in) == 112) {
        if (multi_invoke_f32(x, x + 108, y, y + 144, y + 149) != 0) return 4;
        if (fwrite(y, sizeof y[0], 154, out) != 154) return 5;
    }
    fclose(in);
    return fclose(out) != 0;
}
"""


@pytest.mark.e2e
@needs_litert
@needs_gcc
def test_float_ports_are_converted_as_the_model_converts_them(tmp_path):
    """`<name>_invoke_f32` quantizes both float inputs and dequantizes the three outputs as the
    model's QUANTIZE / DEQUANTIZE ops: LiteRT's float outputs, bit for bit."""
    tflite = tflite_graphs.multi_io_graph(float_io=True)
    inputs = port_inputs(float_io=True)
    want = packed(litert_outputs(tflite, inputs))
    lib = tmp_path / "lib"
    generate_library(tflite, "multi", lib)
    (tmp_path / "main.c").write_text(F32_MAIN)
    exe = tmp_path / "f32.exe"
    subprocess.run(["gcc", *CFLAGS, f"-I{lib}", "-o", str(exe), str(tmp_path / "main.c"),
                    *map(str, sorted(lib.glob("*.c")))], check=True, capture_output=True)
    (tmp_path / "in.bin").write_bytes(packed(inputs).tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True, timeout=60)
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32).reshape(want.shape)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.e2e
@needs_litert
@needs_arm_gcc
@pytest.mark.parametrize("board", ["microbit", "mps2-an386"])  # Cortex-M0, M4
def test_several_ports_run_in_qemu_and_are_counted(board, tmp_path):
    """The QEMU harness and the instruction counter call `<name>_invoke_packed` (Cortex-M0, M4)."""
    from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu
    from edgeport.mcu.toolchain.icount import count_instructions

    tflite = tflite_graphs.multi_io_graph()
    inputs = port_inputs(float_io=False, seed=1)
    want = packed(litert_outputs(tflite, inputs))
    generate_library(tflite, "multi", tmp_path / "lib")
    firmware = build_firmware(tmp_path / "lib", "multi", board, tmp_path / "build")
    assert (firmware.input_size, firmware.output_size) == (112, 154)
    np.testing.assert_array_equal(run_qemu(firmware, packed(inputs)), want)
    counted = count_instructions(firmware.elf, "multi", board, packed(inputs)[:1].tobytes())
    np.testing.assert_array_equal(np.frombuffer(bytes(counted["outputs"]), np.int8), want[0])
    assert counted["instructions"] > 1000


THREE_HEADS = """
import torch
from torch import nn


class ThreeHeads(nn.Module):
    \"\"\"A small face-detector-shaped CNN: a PReLU trunk, three outputs (boxes, per-pixel class
    probabilities from a softmax over the channels, landmarks).\"\"\"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                                   nn.PReLU())
        self.boxes = nn.Conv2d(8, 4, 1)
        self.scores = nn.Conv2d(8, 2, 1)
        self.landmarks = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
        with torch.no_grad():  # trained PReLUs have a slope per channel
            self.trunk[1].weight.copy_(torch.linspace(-0.2, 0.6, 8))

    def forward(self, x):
        y = self.trunk(x)
        return self.boxes(y), torch.softmax(self.scores(y), dim=1), self.landmarks(y)


def build():
    return ThreeHeads().eval()
"""


@pytest.mark.e2e
@needs_torch
@needs_litert
@needs_arm_gcc
def test_a_three_output_cnn_exports_to_cortex_m4_bit_exact(tmp_path):
    (tmp_path / "three_heads.py").write_text(THREE_HEADS)
    data = np.random.default_rng(0).normal(size=(16, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=data)
    out = tmp_path / "out"
    result = run_cli("export", "three_heads:build", "--target", "cortex-m4", "--quantize", "int8", "--calib",
                     str(tmp_path / "calib.npz"), "--eval", str(tmp_path / "calib.npz"), "--out", str(out),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checks = load_report(out)["targets"][0]["checks"]
    exact = checks["bit_exact"]
    assert exact["status"] == "measured" and exact["bit_exact"] and exact["samples"] == 36
    assert checks["parity"]["status"] == "measured" and checks["parity"]["cosine"] >= 0.99
    # litert-torch writes each PReLU as float RELU, MUL, SUB between int8 tensors: two tables
    notes = load_report(out)["targets"][0]["notes"]
    assert any(n.startswith("2 group(s) of float ops") and "RELU, MUL, MUL, SUB" in n for n in notes), notes
    header = next((out / "cortex-m4").glob("*/three_heads.h")).read_text()
    assert "int8_t *output0, int8_t *output1, int8_t *output2);" in header
