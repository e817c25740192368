"""Generated C under AddressSanitizer and UndefinedBehaviorSanitizer (edgeport.mcu.toolchain.host):
every library the Cortex-M tests generate (digits int8 from PyTorch, the MLPerf Tiny KWS and AD
models, the op graphs of tests/testmodels, the low-bit and compressed-storage variants), built
with the host gcc with `-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all`,
plain C and the DSP path on emulated intrinsics, run on random and extreme int8 inputs; any
finding fails, and the outputs must be LiteRT's reference kernels' bytes, so the run is also a
correctness check. Then: the sanitizers are live (planted bugs are caught, in one line), and a
build that fails is one line naming gcc's first error and the log file (an internal error, exit 3).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CALIB, MCU_MODELS, litert_reference, needs_gcc, needs_litert, needs_torch, random_inputs

from edgeport import guard
from edgeport.errors import EXIT_INTERNAL, EdgeportError
from edgeport.mcu.compiler import lowering_compressed
from edgeport.mcu.compiler import storage as st
from edgeport.mcu.compiler.codegen import generate_library
from edgeport.mcu.compiler.storage import WeightStorage
from edgeport.mcu.compiler.tflite_ir import read_tflite
from edgeport.mcu.toolchain.firmware import FirmwareBuildError, first_error, run_tool
from edgeport.mcu.toolchain.host import (
    VARIANTS,
    HostRunError,
    SanitizerError,
    build_host,
    host_missing,
    run_host,
)

from testmodels import tflite_graphs

MISSING = host_missing()
needs_sanitizers = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
SAMPLES = 50  # random inputs per library, plus the extreme ones
LOWBIT = WeightStorage(lowbit=True)
LOWBIT_GRAPHS = {
    "binary-fc": tflite_graphs.lowbit_fc_graph,
    "ternary-fc": lambda: tflite_graphs.lowbit_fc_graph("ternary"),
    "binary-conv": tflite_graphs.lowbit_conv_graph,
    "ternary-conv": lambda: tflite_graphs.lowbit_conv_graph("ternary"),
    "xnor-fc": tflite_graphs.xnor_fc_graph,
    "xnor-conv": tflite_graphs.xnor_conv_graph,
}
STORAGES = {
    "palette": dict(palette=True), "sparse": dict(sparse=True), "palette+huffman": dict(palette=True, huffman=True),
    "sparse+huffman": dict(sparse=True, huffman=True), "sparse+palette+huffman": dict(palette=True, sparse=True, huffman=True),
}


def _bias_overflow_graph(bias: int) -> bytes:
    """FULLY_CONNECTED whose accumulator + bias leaves int32 (LiteRT wraps around)."""
    return tflite_graphs.fully_connected_graph(1.0, 1.0, 1.0, bias, weight=127)


# name -> (tflite factory, weight storage): every library the other Cortex-M tests generate
LIBRARIES = {
    **{name: (make, None) for name, make in MCU_MODELS.items()},
    **{name: (make, None) for name, make in LOWBIT_GRAPHS.items()},
    **{f"{name}-lowbit": (make, LOWBIT) for name, make in LOWBIT_GRAPHS.items()},
    "xnor-fc-lowbit+compressed": (tflite_graphs.xnor_fc_graph,
                                  WeightStorage(lowbit=True, palette=True, sparse=True, huffman=True, decode="init")),
    **{f"compressible-{kind}-{decode}": (tflite_graphs.compressible_graph, WeightStorage(decode=decode, **flags))
       for kind, flags in STORAGES.items() for decode in ("kernel", "init")},
    **{f"compare-{op.lower()}": (lambda op=op: tflite_graphs.comparison_graph(op), None)
       for op in ("GREATER_EQUAL", "GREATER", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL")},
    "fc-bias-overflow+": (lambda: _bias_overflow_graph(2**31 - 1000), None),
    "fc-bias-overflow-": (lambda: _bias_overflow_graph(-(2**31) + 1000), None),
    "conv-bias-overflow+": (lambda: tflite_graphs.conv_1x1_graph(1.0, 1.0, 1.0, 2**31 - 100), None),
    "conv-bias-overflow-": (lambda: tflite_graphs.conv_1x1_graph(1.0, 1.0, 1.0, -(2**31) + 100), None),
}
EDGE_CASES = {name for name in LIBRARIES if "overflow" in name}  # outputs mostly saturated: few distinct values


@pytest.fixture(scope="session")
def object_cache(tmp_path_factory):
    """Compiled kernel objects shared by every build of the session (keyed by source, headers, flags)."""
    return tmp_path_factory.mktemp("host-objects")


def extreme_inputs(tflite: bytes, dtype) -> np.ndarray:
    """Inputs at the ends of the range: int8 -128 / 127 / alternating / 0; float values large and
    tiny, of both signs, whose quantization still fits int32 (beyond that, LiteRT's own float to
    int conversion is undefined and not a reference)."""
    graph = read_tflite(tflite)
    size = int(np.prod(graph.tensors[graph.inputs[0]].shape))
    if np.dtype(dtype) == np.int8:
        rows = [np.full(size, -128), np.full(size, 127), np.resize([-128, 127], size), np.zeros(size)]
        return np.stack(rows).astype(np.int8)
    scale = graph.tensors[graph.consumers(graph.inputs[0])[0].outputs[0]].scale
    values = [1e6 * scale, -1e6 * scale, 127.5 * scale, -128.5 * scale, 1e-40, -0.0, 0.0]
    return np.stack([np.full(size, v) for v in values]).astype(np.float32)


def run_sanitized(lib, name: str, tmp_path, cache, variant: str, inputs: np.ndarray, float_api: bool) -> np.ndarray:
    """Outputs of the sanitized host build for `inputs`, run forwards then backwards in one process
    (an output that depends on the previous invoke's arena would differ)."""
    build = build_host(lib, name, tmp_path / "build", float_api=float_api, variant=variant, cache_dir=cache)
    flat = inputs.reshape(len(inputs), -1)
    got = run_host(build, np.concatenate([flat, flat[::-1]]))
    forwards, backwards = got[:len(flat)], got[len(flat):][::-1]
    np.testing.assert_array_equal(forwards.view(np.uint8), backwards.view(np.uint8),
                                  err_msg="an output depends on the previous invoke")
    return forwards


def check_library(tflite: bytes, name: str, tmp_path, cache, variant: str, storage=None, distinct: int = 4) -> int:
    """Generate, build with sanitizers, run on random + extreme inputs, compare with LiteRT byte
    for byte (`<name>_invoke`, and `<name>_invoke_f32` for float I/O); the number of samples run."""
    lib = tmp_path / "lib"
    info = generate_library(tflite, name, lib, storage=storage)
    x = random_inputs(tflite, SAMPLES)
    inputs = np.concatenate([x, extreme_inputs(tflite, x.dtype).reshape(-1, *x.shape[1:])])
    if not info.float_api:
        (ref,) = litert_reference(tflite, inputs)
        got = run_sanitized(lib, info.name, tmp_path, cache, variant, inputs, float_api=False)
        np.testing.assert_array_equal(got, ref.reshape(len(ref), -1))
        assert len(np.unique(ref)) >= distinct, "degenerate reference outputs: the comparison would mean little"
        return len(inputs)
    graph = read_tflite(tflite)
    core_in = graph.consumers(graph.inputs[0])[0].outputs[0]
    core_out = graph.producer(graph.outputs[0]).inputs[0]
    ref, q_in, q_out = litert_reference(tflite, inputs, (core_in, core_out))
    got = run_sanitized(lib, info.name, tmp_path, cache, variant, inputs, float_api=True)
    np.testing.assert_array_equal(got.view(np.uint8), ref.reshape(len(ref), -1).view(np.uint8))
    got_q = run_sanitized(lib, info.name, tmp_path, cache, variant, q_in, float_api=False)
    np.testing.assert_array_equal(got_q, q_out.reshape(len(q_out), -1))
    return 2 * len(inputs)


# ------------------------------------------------------------------ every generated library

@pytest.mark.e2e
@needs_litert
@needs_sanitizers
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("library", LIBRARIES)
def test_library_is_clean_and_bit_exact_under_sanitizers(library, variant, object_cache, tmp_path):
    make, storage = LIBRARIES[library]
    distinct = 1 if library in EDGE_CASES else 4
    assert check_library(make(), "m", tmp_path, object_cache, variant, storage, distinct) >= SAMPLES


@pytest.mark.e2e
@needs_litert
@needs_sanitizers
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("form", ["csr", "palette"])
@pytest.mark.parametrize("model", MCU_MODELS)
def test_packed_kernel_corners_under_sanitizers(model, form, variant, object_cache, monkeypatch, tmp_path):
    """test_mcu_storage's forced storage: the packed kernels on every shape corner of the models
    (dilation, padding, strides, depth multipliers, groups, batches)."""
    force = {"csr": lambda m: st.csr_weights(m, use_palette=True, huffman=True),
             "palette": lambda m: st.palette_weights(m, huffman=True) or st.csr_weights(m)}[form]
    monkeypatch.setattr(lowering_compressed, "pack_weights", lambda matrix, storage: (force(matrix), []))
    check_library(MCU_MODELS[model](), model, tmp_path, object_cache, variant, WeightStorage(palette=True))


@pytest.fixture(scope="module")
def digits_tflite(tmp_path_factory):
    """The digits CNN as int8 .tflite, as the Cortex-M target makes it (integer I/O) and with float I/O."""
    from edgeport.cli import main

    made = {}

    def get(io: str) -> bytes:
        if io not in made:
            out = tmp_path_factory.mktemp(f"digits-{io}")
            assert main(["export", "samples.digits.model:build", "--target", "android", "--quantize", "int8",
                         "--calib", CALIB, "--android-io", io, "--runs", "1", "--warmup", "0", "--out", str(out)]) == 0
            made[io] = next((out / "android").glob("*.tflite")).read_bytes()
        return made[io]

    return get


@pytest.mark.e2e
@needs_litert
@needs_torch
@needs_sanitizers
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("io", ["int", "float"])
def test_digits_int8_under_sanitizers(digits_tflite, io, variant, object_cache, tmp_path):
    check_library(digits_tflite(io), "digits", tmp_path, object_cache, variant)


# ------------------------------------------------------------------ the sanitizers are live

TINY_H = ("#include <stdint.h>\n#define TINY_INPUT_SIZE 4\n#define TINY_OUTPUT_SIZE 4\n#define TINY_ARENA_SIZE 0\n"
          "int tiny_invoke(const int8_t *input, int8_t *output);\n")


def _tiny_lib(tmp_path, body: str):
    lib = tmp_path / "tiny"
    lib.mkdir(parents=True)
    (lib / "tiny.h").write_text(TINY_H)
    (lib / "tiny.c").write_text('#include "tiny.h"\nint tiny_invoke(const int8_t *input, int8_t *output)\n{\n'
                                + body + "\n}\n")
    return lib


@pytest.mark.e2e
@needs_sanitizers
@pytest.mark.parametrize("body, finding", [
    ("for (int i = 0; i <= 4; i++) output[i & 3] = input[i];\nreturn 0;",
     "AddressSanitizer: heap-buffer-overflow"),
    ("int32_t big = 2147483600 + input[0];\noutput[0] = (int8_t)(big + 100);\n"
     "for (int i = 1; i < 4; i++) output[i] = 0;\nreturn 0;",
     "tiny.c:4:9: runtime error: signed integer overflow"),
    ("int s = input[0] - 90;\nfor (int i = 0; i < 4; i++) output[i] = (int8_t)((1 << s) >> 24);\nreturn 0;",
     "runtime error: shift exponent"),
    ("static int8_t scratch[4];\nconst int8_t *p = scratch;\nfor (int i = 0; i < 4; i++) output[i] = p[i + (input[0] > 100 ? 1 : 0)];\n"
     "return 0;", "with insufficient space for an object"),  # UBSan's object-size check, before ASan
])
def test_planted_bugs_are_caught_in_one_line(tmp_path, body, finding):
    build = build_host(_tiny_lib(tmp_path, body), "tiny", tmp_path / "build")
    with pytest.raises(SanitizerError) as err:
        run_host(build, np.full((2, 4), 127, np.int8))
    message = str(err.value)
    assert finding in message and "\n" not in message and err.value.log in message
    assert "ERROR" in open(err.value.log).read() or "runtime error" in open(err.value.log).read()


@pytest.mark.e2e
@needs_sanitizers
def test_harness_failures_are_named(tmp_path):
    build = build_host(_tiny_lib(tmp_path, "(void)input; (void)output; return 1;"), "tiny", tmp_path / "build")
    with pytest.raises(HostRunError, match="tiny_invoke returned non-zero"):
        run_host(build, np.zeros((1, 4), np.int8))
    body = "((int8_t *)input)[0] = 1;\nfor (int i = 0; i < 4; i++) output[i] = 0;\nreturn 0;"
    build = build_host(_tiny_lib(tmp_path / "w", body), "tiny", tmp_path / "w" / "build")
    with pytest.raises(HostRunError, match="modified its input buffer"):
        run_host(build, np.zeros((1, 4), np.int8))


# ------------------------------------------------------------------ build failures in one line

GCC_OUTPUT = """In file included from /tmp/x/lib/m.c:3:
/tmp/x/lib/ep_kernels.h: In function 'ep_clamp':
/tmp/x/lib/m.c:41:22: error: 'op9_quant' undeclared here (not in a function); did you mean 'op0_quant'?
   41 |     ep_conv2d_s8(&op9, op9_quant);
      |                        ^~~~~~~~~
/tmp/x/lib/m.c:42:1: error: expected ';' before '}' token
"""
LD_OUTPUT = """/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld: app.elf section `.rodata' will not fit in region `FLASH'
/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld: region `FLASH' overflowed by 1234 bytes
collect2: error: ld returned 1 exit status
"""


def test_first_error_is_one_line():
    assert first_error(GCC_OUTPUT) == ("m.c:41:22: error: 'op9_quant' undeclared here (not in a function); "
                                       "did you mean 'op0_quant'?")
    assert first_error(LD_OUTPUT).endswith("ld: app.elf section `.rodata' will not fit in region `FLASH'")
    assert first_error("") == "no output"


@needs_gcc
def test_a_build_failure_is_one_line_with_the_log(tmp_path):
    source = tmp_path / "bad.c"
    source.write_text("int f(void) { return undeclared_x; }\n"
                      + "\n".join(f"int g{i}(void) {{ return y{i}; }}" for i in range(60)))  # ~180 lines of errors
    with pytest.raises(FirmwareBuildError) as err:
        run_tool(["gcc", "-c", str(source), "-o", str(tmp_path / "bad.o")], "compiling bad.c for the host")
    message = str(err.value)
    assert "\n" not in message and not isinstance(err.value, EdgeportError)
    assert message.startswith("compiling bad.c for the host failed: bad.c:1:")
    assert "error: 'undeclared_x' undeclared" in message and f"full log: {err.value.log}" in message
    log = open(err.value.log).read()
    assert "y59" in log and str(source) in log  # every diagnostic and the command are in the file


def test_a_build_failure_is_an_internal_error_exit_3(tmp_path, monkeypatch, capsys):
    """Generated C that does not compile is edgeport's bug: the guard's exit 3, one line, a crash log."""
    monkeypatch.setenv("EDGEPORT_LOG_DIR", str(tmp_path))

    def run() -> int:
        raise FirmwareBuildError("compiling m.c for cortex-m4 failed: m.c:41:22: error: 'x' undeclared "
                                 "(arm-none-eabi-gcc exited with 1; full log: /tmp/edgeport-build-x.log)")

    assert guard.guarded(run) == EXIT_INTERNAL
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" in err and "m.c:41:22: error: 'x' undeclared" in err
    assert list(tmp_path.glob("edgeport-crash-*.log"))
