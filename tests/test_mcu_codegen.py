"""Cortex-M standalone C library (edgeport.mcu): the generated C, compiled with the host gcc, must
give the same bytes as LiteRT's reference kernels (BUILTIN_REF) on the MLPerf Tiny models,
on graphs built op by op (tests/testmodels/tflite_graphs.py) and on a PyTorch export; it must
build warning-free with arm-none-eabi-gcc for Cortex-M4 (DSP path) and Cortex-M0 (plain C).
Plus the arithmetic (QuantizeMultiplier & co.), the memory planner, names and errors.

The DSP path (ACLE intrinsics) also runs on the host: with -DEP_EMULATE_DSP the kernels use a
plain-C model of the intrinsics (kernels/ep_dsp_emulation.h), so its bytes are checked here too;
on a Cortex-M4 the same sources use the real instructions (and the few inline-assembly ones,
SMMULR and SXTB16/SXTAB16 with ROR, whose C equivalents the host runs instead).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import CALIB, ROOT, needs_torch

from edgeport.errors import InputError, UnsupportedOpError
from edgeport.mcu.compiler import lowering, planner, requant
from edgeport.mcu.compiler.codegen import (
    KERNEL_DIR,
    generate_c_array,
    generate_library,
    sanitize_identifier,
)

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (reference kernels, flatbuffer schema) not installed")
from testmodels import tflite_graphs

DATA = ROOT / "tests" / "data" / "mlperf-tiny"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf-tiny"
SAMPLES = 20
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")
needs_arm_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                   reason="arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi)")
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
DSP_VARIANTS = {"plain": [], "dsp-emulated": ["-DEP_EMULATE_DSP", f"-I{KERNEL_DIR}"]}

MAIN_C = """#include <stdio.h>
#include "@name@.h"

/* Reads N inputs from argv[1], writes N outputs to argv[2] (raw values, native order). */
int main(int argc, char **argv)
{
    static @in_t@ x[@NAME@_INPUT_SIZE];
    static @out_t@ y[@NAME@_OUTPUT_SIZE];
    FILE *in, *out;
    if (argc != 3) return 2;
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out) return 2;
    while (fread(x, sizeof x[0], @NAME@_INPUT_SIZE, in) == @NAME@_INPUT_SIZE) {
        if (@fn@(x, y) != 0) return 4;
        if (fwrite(y, sizeof y[0], @NAME@_OUTPUT_SIZE, out) != @NAME@_OUTPUT_SIZE) return 5;
    }
    fclose(in);
    return fclose(out) != 0;
}
"""


def model_bytes(name: str) -> bytes:
    """An MLPerf Tiny model: the repo's copy, else the shared one, else skip."""
    for folder in (DATA, SHARED):
        if (folder / name).exists():
            return (folder / name).read_bytes()
    pytest.skip(f"{name} not found in {DATA} or {SHARED}")


def litert_reference(tflite: bytes, inputs: np.ndarray, tensors: tuple[int, ...] = ()) -> list[np.ndarray]:
    """Outputs of LiteRT's reference kernels per input, and any extra tensors asked for."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=bool(tensors))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = [[] for _ in range(1 + len(tensors))]
    for x in inputs:
        interpreter.set_tensor(inp["index"], x.reshape(inp["shape"]))
        interpreter.invoke()
        for slot, index in zip(results, (out["index"], *tensors)):
            slot.append(interpreter.get_tensor(index).copy())
    return [np.stack(r) for r in results]


def run_c(lib: Path, name: str, fn: str, in_t: str, out_t: str, inputs: np.ndarray, out_shape, out_dtype,
          tmp: Path, cflags=()) -> np.ndarray:
    """Compile the library with a test main (host gcc) and run it on all inputs at once."""
    main = (MAIN_C.replace("@name@", name).replace("@NAME@", name.upper()).replace("@fn@", fn)
            .replace("@in_t@", in_t).replace("@out_t@", out_t))
    (tmp / "main.c").write_text(main)
    exe = tmp / f"{fn}.exe"
    sources = [str(p) for p in sorted(lib.glob("*.c"))]
    build = subprocess.run(["gcc", *CFLAGS, *cflags, f"-I{lib}", "-o", str(exe), str(tmp / "main.c"), *sources],
                           capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    (tmp / "in.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
    run = subprocess.run([str(exe), str(tmp / "in.bin"), str(tmp / "out.bin")], capture_output=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return np.frombuffer((tmp / "out.bin").read_bytes(), dtype=out_dtype).reshape(len(inputs), *out_shape)


def random_inputs(tflite: bytes, n: int, seed: int = 0) -> np.ndarray:
    from edgeport.mcu.compiler.tflite_ir import read_tflite

    graph = read_tflite(tflite)
    tensor = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    if tensor.dtype == "int8":
        return rng.integers(-128, 128, (n, *tensor.shape), dtype=np.int8)
    x = rng.normal(0.0, 2.0, (n, *tensor.shape)).astype(np.float32)
    # some values halfway between int8 steps: QUANTIZE rounds them away from zero
    scale = graph.tensors[graph.consumers(graph.inputs[0])[0].outputs[0]].scale
    x.reshape(n, -1)[:, :7] = (np.arange(-3, 4) + 0.5).astype(np.float32) * np.float32(scale)
    return x


def check_bit_exact(tflite: bytes, name: str, tmp: Path, cflags=(), n: int = SAMPLES):
    """Generate, compile, run; assert byte equality with LiteRT for <name>_invoke and, for float
    I/O, <name>_invoke_f32. Returns the LibraryInfo."""
    lib = tmp / "lib"
    info = generate_library(tflite, name, lib, source=f"{name}.tflite")
    inputs = random_inputs(tflite, n)
    if not info.float_api:
        (ref,) = litert_reference(tflite, inputs)
        got = run_c(lib, info.name, f"{info.name}_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8,
                    tmp, cflags)
        assert len(np.unique(ref)) > 3, "degenerate reference outputs: the comparison would mean little"
        np.testing.assert_array_equal(got, ref)
        return info
    # float I/O: the int8 core through <name>_invoke, the whole model through <name>_invoke_f32
    from edgeport.mcu.compiler.tflite_ir import read_tflite

    graph = read_tflite(tflite)
    core_in = graph.consumers(graph.inputs[0])[0].outputs[0]
    core_out = graph.producer(graph.outputs[0]).inputs[0]
    ref, q_in, q_out = litert_reference(tflite, inputs, (core_in, core_out))
    in_t = "float" if info.input_dtype == "float32" else "int8_t"
    out_t = "float" if info.output_dtype == "float32" else "int8_t"
    got = run_c(lib, info.name, f"{info.name}_invoke_f32", in_t, out_t, inputs, ref.shape[1:], ref.dtype, tmp, cflags)
    np.testing.assert_array_equal(got.view(np.uint8), ref.view(np.uint8))
    got_q = run_c(lib, info.name, f"{info.name}_invoke", "int8_t", "int8_t", q_in, q_out.shape[1:], np.int8,
                  tmp, cflags)
    np.testing.assert_array_equal(got_q, q_out)
    return info


def conv_variants_graph(seed: int = 3) -> bytes:
    """int8 in, int8 out: the corners of the DSP convolution paths. 63 output pixels (an odd last
    pixel pair), 7 output channels (an odd last channel), K = 45 and K = 7 (K % 4 left over); a
    pointwise layer in place with fewer output than input channels; dilated depthwise over 6
    channels (a block of 4 and 2 left over) clamped to [-1, 1]; a 6x5 per-tensor convolution;
    depthwise 4x3 (12 taps, the tap loop) and 6x5 (30 taps, over the DSP path's table); a strided
    valid convolution."""
    g = tflite_graphs.GraphBuilder(seed)
    x = g.activation("input", (1, 9, 7, 5), 0.05, -3)
    a = g.conv(x, 7, k=(3, 3), padding="SAME", act="RELU")
    b = g.conv(a, 6, k=(1, 1), act="RELU6")
    c = g.conv(b, 6, k=(3, 3), dilation=(2, 2), padding="SAME", depthwise=True, act="RELU_N1_TO_1")
    d = g.conv(c, 8, k=(6, 5), padding="SAME", per_channel=False)
    e = g.conv(d, 8, k=(4, 3), padding="SAME", depthwise=True)
    f = g.conv(e, 8, k=(6, 5), padding="SAME", depthwise=True)
    y = g.conv(f, 5, k=(2, 3), stride=(2, 2), padding="VALID")
    return g.build([x], [y])


MODELS = {
    "kws": lambda: model_bytes("kws_ref_model.tflite"),
    "ad": lambda: model_bytes("ad01_int8.tflite"),
    "ops": tflite_graphs.ops_graph,
    "layout": tflite_graphs.layout_graph,
    "conv": conv_variants_graph,
}


@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
@pytest.mark.parametrize("model", MODELS)
def test_bit_exact_with_litert_reference(model, variant, tmp_path):
    info = check_bit_exact(MODELS[model](), model, tmp_path, DSP_VARIANTS[variant])
    assert info.arena_bytes % planner.ALIGNMENT == 0
    assert sum(info.ops.values()) > 0 and info.weight_bytes > 0


@needs_gcc
def test_mlperf_tiny_figures(tmp_path):
    """Arena within 0.7x of TFLite Micro's (KWS 24,272 B, AD 3,984 B, both holding the I/O
    tensors, so compare arena + I/O); MACs as published; const data about the size of the
    weights."""
    kws = generate_library(model_bytes("kws_ref_model.tflite"), "kws", tmp_path / "kws")
    ad = generate_library(model_bytes("ad01_int8.tflite"), "ad", tmp_path / "ad")
    assert kws.ram_bytes <= 0.7 * 24272 and ad.ram_bytes <= 0.7 * 3984
    # two 25x5x64 activations alive at once, no more: the pointwise layers write over their input
    # (in place), so their im2col columns, like the first layer's, fit in the space then unused
    assert kws.arena_bytes == 2 * 25 * 5 * 64
    assert kws.macs == 2_656_768 and ad.macs == 264_192
    assert kws.ops == {"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
                       "FULLY_CONNECTED": 1, "SOFTMAX": 1}
    assert (kws.input_shape, kws.input_dtype, kws.output_size) == ((1, 49, 10, 1), "int8", 12)
    assert kws.input_quantization == (pytest.approx(0.5847029), 83)
    assert kws.output_quantization == (0.00390625, -128)
    assert 266_000 < ad.weight_bytes < 276_976  # int8 weights + int32 biases + FC scales, no flatbuffer
    header = (tmp_path / "kws" / "kws.h").read_text()
    for line in ("#define KWS_INPUT_SIZE 490", "#define KWS_OUTPUT_SIZE 12", "#define KWS_ARENA_SIZE 16000",
                 "#define KWS_OUTPUT_ZERO_POINT (-128)", "int kws_invoke(const int8_t *input, int8_t *output);"):
        assert line in header
    assert "Generated by edgeport" in header and "kws_invoke_f32" not in header
    source = (tmp_path / "kws" / "kws.c").read_text()
    assert "malloc" not in source and source.count("static int8_t arena[KWS_ARENA_SIZE] EP_ALIGN16;") == 1
    assert "static const int8_t t17[2560]" in source  # weights are const (flash)


@needs_arm_gcc
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0"])
def test_builds_warning_free_for_cortex_m(cpu, tmp_path):
    """-mcpu=cortex-m4 compiles the DSP path (SMLAD & co. in the object), cortex-m0 the plain C."""
    for model in ("kws", "ops", "layout"):
        lib = tmp_path / model
        generate_library(MODELS[model](), model, lib)
        for source in sorted(lib.glob("*.c")):
            obj = tmp_path / f"{model}_{source.stem}.o"
            result = subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-mcpu={cpu}", "-mthumb", "-Os", "-c", "-Wall",
                                     "-Wextra", "-Werror", "-o", str(obj), str(source)], capture_output=True, text=True,
                                    check=False)
            assert result.returncode == 0, result.stderr
    dump = subprocess.run(["arm-none-eabi-objdump", "-d", str(tmp_path / "kws_ep_conv.o")], capture_output=True,
                          text=True, check=True).stdout
    assert ("smlad" in dump) == (cpu == "cortex-m4")


# ------------------------------------------------------------------ a PyTorch export

@pytest.fixture(scope="session")
def torch_exports(tmp_path_factory):
    """`edgeport export ... --target android --quantize int8`, once per label: path of the .tflite."""
    from edgeport.cli import main

    made = {}

    def get(label: str, source: str, calib: str, *flags: str) -> Path:
        if label not in made:
            out = tmp_path_factory.mktemp(label)
            assert main(["export", source, "--target", "android", "--quantize", "int8", "--calib", calib,
                         "--runs", "1", "--warmup", "0", "--out", str(out), *flags]) == 0
            made[label] = next((out / "android").glob("*.tflite"))
        return made[label]

    return get


@needs_torch
@needs_gcc
def test_pytorch_export_bit_exact(torch_exports, tmp_path):
    """The digits CNN exported with float I/O: QUANTIZE, depthwise with multiplier 16, CONV,
    MAX_POOL (SAME), TRANSPOSE, FULLY_CONNECTED (keep_num_dims), DEQUANTIZE."""
    path = torch_exports("digits-float-io", "samples.digits.model:build", CALIB, "--android-io", "float")
    info = check_bit_exact(path.read_bytes(), "digits", tmp_path, DSP_VARIANTS["dsp-emulated"])
    assert info.float_api and info.input_dtype == "float32" and info.ops["MAX_POOL_2D"] == 1
    assert "int digits_invoke_f32(const float *input, float *output);" in (tmp_path / "lib" / "digits.h").read_text()


@needs_torch
def test_pytorch_export_with_float_ops_is_refused(torch_exports, tmp_path):
    """The op zoo's PT2E export keeps its residual ADD in float: no C kernel, named error."""
    calib = tmp_path / "zoo_calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((16, 3, 17, 15)).astype(np.float32))
    path = torch_exports("zoo", "testmodels.zoo:build_zoo", str(calib), "--android-io", "int")
    with pytest.raises(UnsupportedOpError) as err:
        generate_library(path.read_bytes(), "zoo", tmp_path / "lib")
    assert err.value.op == "ADD (float32)" and err.value.where == "no Cortex-M C kernel in edgeport"
    assert not (tmp_path / "lib").exists()


# ------------------------------------------------------------------ TFLite arithmetic

def test_quantize_multiplier_known_values():
    assert requant.quantize_multiplier(0.5) == (1 << 30, 0)
    assert requant.quantize_multiplier(1.0) == (1 << 30, 1)
    assert requant.quantize_multiplier(0.25) == (1 << 30, -1)
    assert requant.quantize_multiplier(0.1) == (1717986918, -3)    # 0.8 * 2**31 = 1717986918.4
    assert requant.quantize_multiplier(1 - 2 ** -40) == (1 << 30, 1)  # rounds up to 2**31: halved
    assert requant.quantize_multiplier(0.0) == (0, 0)
    assert requant.quantize_multiplier(1e-12) == (0, 0)             # below 2**-31: flushed to zero
    assert requant.quantize_multiplier(2.0 ** 40) == (1 << 30, 41)
    assert requant.quantize_multiplier(2.0 ** 40, single_rounding=True) == ((1 << 31) - 1, 30)
    multipliers, shifts = requant.quantize_multipliers([0.5, 0.1])
    assert multipliers.tolist() == [1 << 30, 1717986918] and shifts.tolist() == [0, -3]


def test_multiply_by_quantized_multiplier_known_values():
    mbqm = requant.multiply_by_quantized_multiplier
    assert mbqm(100, 1 << 30, 0) == 50
    assert mbqm(3, 1 << 30, 2) == 6                     # left shift first
    assert mbqm(5, 1 << 30, -1) == 2                    # 1.25: 2.5 -> 3, then 1.5 -> 2 (double rounding)
    assert mbqm(5, 1 << 30, -1, single_rounding=True) == 1
    assert mbqm(-7, 1 << 30, -1) == -2
    assert mbqm(-5125, 1602186606, -5) == -120          # double rounding
    assert mbqm(-5125, 1602186606, -5, single_rounding=True) == -119
    assert requant.rounding_divide_by_pot(5, 1) == 3 and requant.rounding_divide_by_pot(-5, 1) == -3
    assert requant.saturating_rounding_doubling_high_mul(-(1 << 31), -(1 << 31)) == (1 << 31) - 1
    assert requant.round_half_away(2.5) == 3 and requant.round_half_away(-2.5) == -3
    assert requant.round_half_away(0.49999999999999994) == 0


def litert_one(tflite: bytes) -> int:
    """LiteRT's output for an all-zero input of a one-output graph (the accumulator is the bias)."""
    from edgeport.mcu.compiler.tflite_ir import read_tflite

    graph = read_tflite(tflite)
    zeros = np.zeros((1, *graph.tensors[graph.inputs[0]].shape), np.int8)
    return int(litert_reference(tflite, zeros)[0].ravel()[0])


def test_litert_rounding_variants():
    """Cases that tell the variants apart, checked against LiteRT itself. CONV_2D requantizes
    with MultiplyByQuantizedMultiplier rounding twice (LiteRT is built without
    TFLITE_SINGLE_ROUNDING); FULLY_CONNECTED rescales in double precision, which neither
    fixed-point variant reproduces."""
    scales = (0.0560639463365078, 0.009554172866046429, 0.022974364459514618)
    multiplier, shift = requant.quantize_multiplier(scales[0] * scales[1] / scales[2])
    assert litert_one(tflite_graphs.conv_1x1_graph(*scales, bias=-5125)) == -120
    assert requant.multiply_by_quantized_multiplier(-5125, multiplier, shift) == -120
    assert requant.multiply_by_quantized_multiplier(-5125, multiplier, shift, single_rounding=True) == -119
    assert litert_one(tflite_graphs.fully_connected_graph(*scales, bias=-5125)) == -119
    assert int(requant.fc_rescale(-5125, requant.fc_output_scale(scales[0], [scales[1]], scales[2]))[0]) == -119

    scales = (0.0839165598154068, 0.005475982557982206, 0.06859223544597626)
    fc_scale = requant.fc_output_scale(scales[0], [scales[1]], scales[2])[0]
    multiplier, shift = requant.quantize_multiplier(fc_scale, single_rounding=True)
    assert litert_one(tflite_graphs.fully_connected_graph(*scales, bias=-18136)) == -121
    assert int(requant.fc_rescale(-18136, fc_scale)) == -121
    assert requant.multiply_by_quantized_multiplier(-18136, multiplier, shift, single_rounding=True) == -122
    assert int(requant.fc_rescale_fixed(-18136, *requant.fc_multiplier(fc_scale))) == -121  # exact fraction


def test_integer_fc_rescale_is_proven_or_refused():
    """The C kernels rescale FULLY_CONNECTED with integers only where that provably gives
    LiteRT's bytes: round(acc * M / 2**n) is exact, LiteRT rounds the product to a double
    first, and they part only next to a .5 tie, which the generator finds."""
    assert requant.fc_multiplier(0.5) == (1 << 52, 53)
    assert requant.fc_rescale_fixed([3, -3, 5], 1 << 52, 53).tolist() == [2, -2, 3]  # 1.5, -1.5, 2.5 away from 0
    scale = 57.5 / 1001  # 1001 * scale is 57.4999...: the double product rounds to 57.5, then to 58
    assert int(requant.fc_rescale(1001, scale)) == 58
    assert int(requant.fc_rescale_fixed(1001, *requant.fc_multiplier(scale))) == 57
    assert requant.fc_fixed_point_mismatch(scale, 0, -128, 127, 900, 1100) == 1001
    assert requant.fc_fixed_point_mismatch(scale, 0, -128, 127, -1100, -900) == -1001
    assert requant.fc_fixed_point_mismatch(scale, 0, -128, 127, 1002, 2000) is None
    assert requant.fc_fixed_point_mismatch(0.0123, 5, -128, 127, -(1 << 20), 1 << 20) is None


@needs_gcc
def test_double_precision_fc_fallback_is_bit_exact(monkeypatch, tmp_path):
    """Where the integer rescale is not proven, FC layers keep LiteRT's double arithmetic."""
    monkeypatch.setattr(requant, "fc_fixed_point_mismatch", lambda scale, zp, lo, hi, acc_min, acc_max: acc_min)
    info = check_bit_exact(MODELS["ad"](), "ad", tmp_path)
    assert len(info.notes) == 10 and "rescaled in double precision" in info.notes[0]
    assert "static const double op0_scale[1]" in (tmp_path / "lib" / "ad.c").read_text()


@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
def test_exact_requantization_fallback_is_bit_exact(variant, monkeypatch, tmp_path):
    """Where ep_requantize_fast is not proven exact, convolutions requantize as TFLite does."""
    monkeypatch.setattr(lowering, "requantize_fast_proven", lambda acc_min, acc_max, shifts: False)
    for model in ("kws", "conv"):
        check_bit_exact(MODELS[model](), model, tmp_path / model, DSP_VARIANTS[variant])
        assert "requantize_fast = 1" not in (tmp_path / model / "lib" / f"{model}.c").read_text()


FAST_REQUANT_C = """#include <stdio.h>
#include <stdlib.h>
#include "ep_fixedpoint.h"

/* argv: count; prints the number of (acc, multiplier, shift, zero point) draws within
 * ep_requantize_fast's proven range where it differs from TFLite's arithmetic. */
int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 0, bad = 0;
    unsigned long long state = 88172645463325252ull;
    for (long i = 0; i < n; i++) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        const int32_t shift = -1 - (int32_t)(state % 22);                         /* -1 .. -22 */
        const int32_t multiplier = (int32_t)((1u << 30) + (uint32_t)(state >> 34) % (1u << 30));
        const int32_t zero_point = (int32_t)((state >> 20) % 256) - 128;
        int32_t acc = (int32_t)((state >> 24) % (1u << 30)) - (1 << 29) + 1;    /* |acc| < 2^29 */
        if (i % 4 == 0) acc = acc / (1 << (state >> 59));                          /* and small ones */
        const int32_t r = -shift;
        const int32_t round = (1 << (r - 1)) + zero_point * (1 << r);
        const int32_t want = ep_multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point;
        bad += ep_requantize_fast(acc, multiplier, shift, round) != want;
    }
    printf("%ld\\n", bad);
    return 0;
}
"""


@needs_gcc
def test_fast_requantization_equals_tflite_in_its_proven_range(tmp_path):
    """ep_requantize_fast (SMMULR of 2 acc, one rounding shift with the zero point folded in) gives
    TFLite's MultiplyByQuantizedMultiplier + zero point for |acc| < 2^29 and right shifts 1..22."""
    (tmp_path / "check.c").write_text(FAST_REQUANT_C)
    exe = tmp_path / "check"
    subprocess.run(["gcc", *CFLAGS, f"-I{KERNEL_DIR}", "-o", str(exe), str(tmp_path / "check.c")], check=True)
    assert subprocess.run([str(exe), "2000000"], capture_output=True, text=True, check=True).stdout.strip() == "0"
    # what the generator requires before using it
    shifts = np.array([-1, -22])
    assert lowering.requantize_fast_proven(np.array([-(1 << 29) + 1, 0]), np.array([5, (1 << 29) - 1]), shifts)
    assert not lowering.requantize_fast_proven(np.array([0, 0]), np.array([1 << 29, 0]), shifts)
    assert not lowering.requantize_fast_proven(np.array([0]), np.array([5]), np.array([0]))
    assert not lowering.requantize_fast_proven(np.array([0]), np.array([5]), np.array([-23]))


@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
def test_pointwise_layers_write_over_their_input_only_at_its_last_use(variant, tmp_path):
    """A 1x1 convolution writes its output over its input when nothing reads the input later (and
    it is not the caller's); a residual ADD reading it later keeps it apart. Bytes as LiteRT's."""
    g = tflite_graphs.GraphBuilder(5)
    x = g.activation("input", (1, 6, 5, 8), 0.05, 4)
    a = g.conv(x, 8, k=(3, 3), act="RELU")
    b = g.conv(a, 8, k=(1, 1), act="RELU")   # a is read again by the ADD: not in place
    c = g.conv(b, 6, k=(1, 1))               # b's last use: in place, 6 of 8 channels
    d = g.conv(c, 8, k=(1, 1))               # more channels than its input: not in place
    y = g.add(a, d)
    check_bit_exact(g.build([x], [y]), "residual", tmp_path, DSP_VARIANTS[variant])
    source = (tmp_path / "lib" / "residual.c").read_text()
    calls = re.findall(r"ep_conv2d_s8\(&op(\d+), (.+?), t\d+, op\d+_quant, (.+?), (.+?)\);", source)
    in_place = {int(op): src == dst for op, src, _, dst in calls}
    assert in_place == {0: False, 1: False, 2: True, 3: False}


def test_prepare_time_parameters():
    assert requant.activation_range("RELU6", 6 / 255, -128) == (-128, 127)
    assert requant.activation_range("RELU", 0.1, -5) == (-5, 127)
    assert requant.activation_range("RELU_N1_TO_1", 1 / 64, 3) == (-61, 67)
    assert requant.activation_range("RELU6", 0.1, 10) == (10, 70)
    with pytest.raises(ValueError):
        requant.activation_range("TANH", 0.1, 0)
    assert requant.softmax_params(1.0, 1 / 16) == (1 << 30, 23, -248)  # 2**22 = 2**30 * 2**(23-31)
    add = requant.add_params(0.5, 0.5, 1.0)
    assert (add["left_shift"], add["input1_multiplier"], add["input1_shift"]) == (20, 1 << 30, 0)
    assert requant.mean_params(0.1, 0.1, 10) == ((1 << 33) // 10, -2)
    assert requant.dequantize([-128, 0, 127], 0.5, 1).tolist() == [-64.5, -0.5, 63.0]


# ------------------------------------------------------------------ memory planner

def test_planner_reuses_memory_of_dead_tensors():
    op_io = [((0,), (1,)), ((1,), (2,)), ((2,), (3,))]        # a chain: 0 -> 1 -> 2 -> 3
    buffers = planner.lifetimes(op_io, {1: 100, 2: 200, 3: 100})
    plan = planner.place(buffers)
    assert plan.offsets[1] == plan.offsets[3] and plan.offsets[2] != plan.offsets[1]
    assert plan.size == 208 + 112 and not planner.conflicts(buffers, plan)
    assert all(offset % planner.ALIGNMENT == 0 for offset in plan.offsets.values())


def test_planner_aliases_and_graph_io():
    op_io = [((0,), (1,)), ((1, 9), (2,)), ((2,), (3,)), ((3, 1), (4,))]  # op 1 is a RESHAPE 1 -> 2
    buffers = {b.key: b for b in planner.lifetimes(op_io, {0: 16, 1: 32, 3: 48, 4: 16}, aliases={2: 1},
                                                   live_at_start=frozenset({0}), live_at_end=frozenset({4}))}
    assert set(buffers) == {0, 1, 3, 4}                  # 2 shares 1's bytes, 9 is not placed (a constant)
    assert (buffers[0].start, buffers[1].start, buffers[1].end, buffers[4].end) == (-1, 0, 3, 4)
    with pytest.raises(ValueError):
        planner.resolve_alias(1, {1: 2, 2: 1})


def test_planner_never_overlaps_live_tensors():
    rng = np.random.default_rng(0)
    for _ in range(200):
        buffers = []
        for key in range(int(rng.integers(1, 15))):
            start = int(rng.integers(-1, 10))
            buffers.append(planner.Lifetime(key, int(rng.integers(1, 300)), start, start + int(rng.integers(0, 5))))
        plan = planner.place(buffers)
        assert planner.conflicts(buffers, plan) == []
        assert planner.lower_bound(buffers) <= plan.size <= sum(planner.align_up(b.size) for b in buffers)


# ------------------------------------------------------------------ names, C array, errors

def test_identifiers_are_valid_c():
    assert sanitize_identifier("kws") == "kws"
    assert sanitize_identifier("1st-model") == "_1st_model"
    assert sanitize_identifier("my model.v2") == "my_model_v2"
    with pytest.raises(InputError):
        sanitize_identifier("  ")


@needs_gcc
def test_c_array_round_trips(tmp_path):
    tflite = model_bytes("kws_ref_model.tflite")
    files = generate_c_array(tflite, "1st kws", tmp_path)
    assert [p.name for p in files] == ["_1st_kws_data.c", "_1st_kws_data.h"]
    assert "Generated by edgeport" in files[0].read_text()
    (tmp_path / "main.c").write_text(
        '#include <stdint.h>\n#include <stdio.h>\n#include "_1st_kws_data.h"\nint main(void) {\n'
        "    if ((uintptr_t)_1st_kws_data % 16u != 0u) return 3;\n"
        "    return fwrite(_1st_kws_data, 1, _1st_kws_data_len, stdout) != _1st_kws_data_len;\n}\n")
    for std in ("-std=c99", "-std=c11"):
        exe = tmp_path / "dump"
        subprocess.run(["gcc", std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", str(exe), str(files[0]),
                        str(tmp_path / "main.c")], check=True)
        assert subprocess.run([str(exe)], capture_output=True, check=True).stdout == tflite


def test_op_without_kernel_is_named_before_anything_is_written(tmp_path):
    for op in ("TANH", "LOGISTIC"):
        with pytest.raises(UnsupportedOpError) as err:
            generate_library(tflite_graphs.single_op_graph(op), "m", tmp_path / op)
        assert (err.value.op, err.value.node) == (op, f"{op.lower()}_out (op 0)")
        assert err.value.where == "no Cortex-M C kernel in edgeport"
        assert not (tmp_path / op).exists()


def test_float_model_is_refused_with_the_recipe_hint(tmp_path):
    message = "is a float model: the C library needs an int8 model — export with --quantize int8 or give an int8 .tflite"
    graph = tflite_graphs.GraphBuilder(0)
    x = graph.float_tensor("x", (1, 4))
    w = graph.const("w", np.ones((2, 4), np.float32))
    y = graph.float_tensor("y", (1, 2))
    graph.op("FULLY_CONNECTED", [x, w, -1], [y], tflite_graphs.schema.FullyConnectedOptionsT())
    with pytest.raises(InputError, match=message):
        generate_library(graph.build([x], [y]), "m", tmp_path, source="float.tflite")
    # MLPerf Tiny's "float32" KWS model: int8 conv weights but float activations (dynamic-range
    # quantization), which is a float model for this purpose too
    name = "kws_ref_model_float32.tflite"
    with pytest.raises(InputError, match=f"{name} {message}"):
        generate_library((DATA / name).read_bytes(), "m", tmp_path, source=name)


def test_unreadable_files_are_one_line_input_errors(tmp_path):
    tflite = model_bytes("kws_ref_model.tflite")
    for data in (tflite[:5000], tflite[:100], b"not a model at all", b""):
        with pytest.raises(InputError) as err:
            generate_library(data, "m", tmp_path, source="bad.tflite")
        assert str(err.value).startswith("bad.tflite: ") and "\n" not in str(err.value)
    with pytest.raises(InputError):
        generate_c_array(b"garbage!", "m", tmp_path)
