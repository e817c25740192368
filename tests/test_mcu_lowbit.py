"""Binary and ternary weights and XNOR layers in the Cortex-M C library (edgeport.mcu.compiler.lowbit,
lowering_lowbit, lowering_elementwise, kernels/ep_lowbit.c and ep_select.c).

The packing and the integer formulas as pure functions (exact round trips; the NumPy reference
from the packed bits equals a plain int64 matmul / convolution); then libraries built with
`WeightStorage(lowbit=True)` from int8 graphs whose filters hold only -1/+1 or -1/0/+1 with
per-channel scales (what binary / ternary training leaves in the .tflite) and whose binary
activations come from the sign pattern litert-torch writes (GREATER_EQUAL + SELECT_V2): compiled
on the host (plain C and the DSP path emulated), built for Cortex-M4 and Cortex-M0 and run in
QEMU, compared byte for byte with LiteRT's reference kernels and, layer by layer, with the NumPy
reference; flash of the packed weights; no multiply in the inner loops (disassembly) nor per
weight when running (unicorn); instruction counts of a binary FULLY_CONNECTED against its int8
version (printed with -s).
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from edgeport.errors import InputError
from edgeport.mcu.compiler import requant
from edgeport.mcu.compiler.codegen import KERNEL_DIR, generate_library
from edgeport.mcu.compiler.lowbit import (
    conv_patches,
    lowbit_kind,
    lowbit_reference_conv,
    lowbit_reference_fc,
    pack_input_bits,
    pack_lowbit,
    xnor_row_terms,
)
from edgeport.mcu.compiler.lowering import compute_padding
from edgeport.mcu.compiler.lowering_elementwise import coalesce_dims, truth_interval
from edgeport.mcu.compiler.lowering_lowbit import two_values
from edgeport.mcu.compiler.storage import WeightStorage, weight_matrix
from edgeport.mcu.compiler.tflite_ir import read_tflite
from edgeport.mcu.toolchain.elfsize import elf_breakdown
from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu, toolchain_missing

from conftest import (
    DSP_VARIANTS,
    litert_reference,
    needs_arm_gcc,
    needs_gcc,
    needs_litert,
    needs_torch,
    random_inputs,
    run_c,
)
from testmodels import tflite_graphs

MISSING = toolchain_missing()
needs_toolchain = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
LOWBIT = WeightStorage(lowbit=True)
SAMPLES = 20
GRAPHS = {
    "binary-fc": tflite_graphs.lowbit_fc_graph,
    "ternary-fc": lambda: tflite_graphs.lowbit_fc_graph("ternary"),
    "binary-conv": tflite_graphs.lowbit_conv_graph,
    "ternary-conv": lambda: tflite_graphs.lowbit_conv_graph("ternary"),
    "xnor-fc": tflite_graphs.xnor_fc_graph,
    "xnor-conv": tflite_graphs.xnor_conv_graph,
}
QEMU_GRAPHS = ("binary-fc", "binary-conv", "ternary-fc", "xnor-fc", "xnor-conv")
BOARDS = {"cortex-m4": "mps2-an386", "cortex-m0": "microbit"}
MULTIPLIES = re.compile(r"\t(mul|muls|mla|mls|[su]mull|[su]mlal|smul\w*|smla\w*|smls\w*|smmul\w*|smmla\w*|umaal)\b")
INNER_LOOPS = ("ep_masked_sum", "ep_popcount_xor", "ep_popcount_and", "ep_popcount_and2")


# ------------------------------------------------------------------ pure functions

def test_kinds_and_exact_packing():
    assert lowbit_kind([[1, -1], [-1, 1]]) == "binary" and lowbit_kind([[0, 1, -1]]) == "ternary"
    assert lowbit_kind(np.zeros((2, 3), np.int8)) == "ternary" and lowbit_kind([[2, 1]]) is None
    # row 0: weights 0..3 = +1 -1 +1 +1 (bits 1101 from bit 0), then -1: word 0b1101 = 13
    binary = np.array([[1, -1, 1, 1, -1], [-1] * 4 + [1]], np.int8)
    packed = pack_lowbit(binary)
    assert (packed.kind, packed.blocks, packed.row_words, packed.nbytes) == ("binary", 1, 1, 8)
    assert packed.words.tolist() == [[0b1101], [0b10000]] and packed.format == "binary 1-bit"
    # ternary: per block the +1 mask, then the -1 mask
    ternary = np.array([[1, 0, -1, 0, 1]], np.int8)
    packed = pack_lowbit(ternary)
    assert packed.words.tolist() == [[0b10001, 0b100]] and packed.format == "ternary 2-bit"
    with pytest.raises(ValueError, match="not binary"):
        pack_lowbit(ternary, "binary")
    with pytest.raises(ValueError, match="not binary or ternary"):
        pack_lowbit(np.array([[3, 1]], np.int8))
    rng = np.random.default_rng(0)
    for cols in (1, 31, 32, 33, 250, 1000):
        for kind, make in (("binary", tflite_graphs.binary_weights), ("ternary", tflite_graphs.ternary_weights())):
            matrix = make(rng, (7, cols))
            packed = pack_lowbit(matrix, kind)
            assert packed.words.shape == (7, -(-cols // 32) * (2 if kind == "ternary" else 1))
            assert packed.nbytes == packed.words.size * 4 and packed.words.dtype == np.uint32
            np.testing.assert_array_equal(packed.decode(), matrix)
            plus, minus = packed.masks()
            assert not np.any(plus & minus) and not np.any(plus[:, cols:] | minus[:, cols:])  # padding: no weight


def test_xnor_formula_with_asymmetric_values():
    """LiteRT's sign gives 127 and -128 (zero point 0): A = 127, B = -128. Weights +1 -1 +1 +1,
    inputs 127 127 -128 127: acc = 127 - 127 - 128 + 127 = -1. Bits s = 1101 (P = 3), b = 1011,
    popcount(b ^ s) = 2: B (2P - n) + (A - B) P = -256 + 765 = 509; 509 - 255 * 2 = -1."""
    packed = pack_lowbit(np.array([[1, -1, 1, 1]], np.int8))
    x = np.array([[127, 127, -128, 127]], np.int8)
    assert pack_input_bits(x, 127)[0, :4].tolist() == [1, 1, 0, 1]
    assert xnor_row_terms(packed, 127, -128, 0).tolist() == [509]
    assert lowbit_reference_fc(x, packed, input_offset=0, binary_input=(127, -128)).tolist() == [[-1]]
    assert lowbit_reference_fc(x, packed, input_offset=0).tolist() == [[-1]]
    with pytest.raises(ValueError, match="besides"):
        lowbit_reference_fc(x, packed, input_offset=0, binary_input=(127, 0))


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_numpy_reference_equals_int64_matmul(kind):
    rng = np.random.default_rng(1)
    make = tflite_graphs.binary_weights if kind == "binary" else tflite_graphs.ternary_weights()
    for cols, offset in ((250, 7), (32, -128), (5, 0), (97, 128)):
        w = make(rng, (13, cols))
        bias = rng.integers(-5000, 5000, 13)
        packed = pack_lowbit(w, kind)
        x = rng.integers(-128, 128, (4, cols)).astype(np.int8)
        expected = (x.astype(np.int64) + offset) @ w.T.astype(np.int64) + bias
        np.testing.assert_array_equal(lowbit_reference_fc(x, packed, input_offset=offset, bias=bias), expected)
        for one, other in ((127, -128), (-128, 127), (5, -3), (9, 9)):  # two values, any offsets
            xb = np.where(rng.random((4, cols)) < 0.5, one, other).astype(np.int8)
            expected = (xb.astype(np.int64) + offset) @ w.T.astype(np.int64) + bias
            got = lowbit_reference_fc(xb, packed, input_offset=offset, bias=bias, binary_input=(one, other))
            np.testing.assert_array_equal(got, expected)


def direct_conv(x, w, bias, offset, stride, dilation, pad, out_hw):
    """CONV_2D in int64 loops, taps in the padding skipped (TFLite's reference)."""
    n, h, wd, _ = x.shape
    out = np.zeros((n, *out_hw, w.shape[0]), np.int64)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for ky in range(w.shape[1]):
                for kx in range(w.shape[2]):
                    iy, ix = oy * stride[0] - pad[0] + ky * dilation[0], ox * stride[1] - pad[1] + kx * dilation[1]
                    if 0 <= iy < h and 0 <= ix < wd:
                        out[:, oy, ox] += (x[:, iy, ix].astype(np.int64) + offset) @ w[:, ky, kx].T.astype(np.int64)
    return out + bias


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_numpy_conv_reference_equals_direct_convolution(kind):
    rng = np.random.default_rng(2)
    make = tflite_graphs.binary_weights if kind == "binary" else tflite_graphs.ternary_weights()
    for k, stride, dilation, pad, size in (((3, 3), (1, 1), (1, 1), (1, 1), (6, 5)),
                                           ((3, 2), (2, 2), (2, 1), (0, 0), (9, 8)),
                                           ((1, 1), (1, 1), (1, 1), (0, 0), (3, 4))):
        w = make(rng, (6, *k, 11))
        bias = rng.integers(-900, 900, 6)
        out_hw = tuple((size[a] + 2 * pad[a] - (k[a] - 1) * dilation[a] - 1) // stride[a] + 1 for a in range(2))
        packed = pack_lowbit(weight_matrix("CONV_2D", w), kind)
        window = {"k": k, "out_hw": out_hw, "stride": stride, "dilation": dilation, "pad": pad}
        x = rng.integers(-128, 128, (2, *size, 11)).astype(np.int8)
        np.testing.assert_array_equal(lowbit_reference_conv(x, packed, input_offset=-3, bias=bias, **window),
                                      direct_conv(x, w, bias, -3, stride, dilation, pad, out_hw))
        xb = np.where(rng.random(x.shape) < 0.5, 127, -128).astype(np.int8)  # padding taken back
        got = lowbit_reference_conv(xb, packed, input_offset=4, bias=bias, binary_input=(127, -128), **window)
        np.testing.assert_array_equal(got, direct_conv(xb, w, bias, 4, stride, dilation, pad, out_hw))
    patches, outside = conv_patches(np.ones((1, 2, 2, 1), np.int8), (3, 3), (1, 1), (1, 1), (1, 1), (2, 2))
    assert outside[0].reshape(3, 3).tolist() == [[True] * 3, [True, False, False], [True, False, False]]
    assert patches[0][outside[0]].tolist() == [0] * 5


def test_weight_storage_lowbit_flag():
    assert WeightStorage(lowbit=True).compresses and not WeightStorage().lowbit
    with pytest.raises(InputError, match="'lowbit' must be true or false"):
        WeightStorage(lowbit=1)


def test_comparison_helpers():
    truth = np.zeros(256, bool)
    assert truth_interval(truth) == (-128, 127, 1)                 # never: outside the whole range
    truth[128:] = True                                             # x >= 0
    assert truth_interval(truth) == (0, 127, 0)
    assert truth_interval(~truth) == (-128, -1, 0)
    truth[:] = True
    truth[130] = False                                             # x != 2
    assert truth_interval(truth) == (2, 2, 1)
    truth[5] = False
    assert truth_interval(truth) is None
    # a sign's SELECT_V2: scalars against [1, 256]: one row of 256 elements
    assert coalesce_dims([1, 256], [256, 1], [0, 0], [0, 0]) == ([256], [[1], [0], [0]])
    assert coalesce_dims([1, 4, 5, 3], [60, 15, 3, 1], [0, 0, 1, 0]) == ([4, 5, 3], [[15, 3, 1], [0, 1, 0]])


# ------------------------------------------------------------------ the NumPy reference of a layer

def reference_layer(graph, op, x: np.ndarray) -> np.ndarray:
    """A low-bit FULLY_CONNECTED / CONV_2D's int8 outputs for its int8 inputs (one per sample): the
    accumulators from the packed bits (`lowbit_reference_fc` / `_conv`; XNOR where the input is a
    sign's), requantized as LiteRT does (FC: double rescale; conv: fixed-point multipliers)."""
    inp, filt, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    bias = graph.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    packed = pack_lowbit(weight_matrix(op.name, filt.data))
    common = {"input_offset": -inp.zero_point, "bias": bias, "binary_input": two_values(graph, op.inputs[0])}
    if op.name == "FULLY_CONNECTED":
        acc = lowbit_reference_fc(x.reshape(-1, packed.cols), packed, **common)
        y = requant.fc_rescale(acc, requant.fc_output_scale(inp.scale, filt.scales, out.scale))
    else:
        k, out_hw = filt.shape[1:3], out.shape[1:3]
        stride = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
        dilation = (op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1))
        pad = tuple(compute_padding(stride[a], dilation[a], inp.shape[1 + a], k[a], out_hw[a]) for a in range(2))
        acc = np.concatenate([lowbit_reference_conv(sample.reshape(inp.shape), packed, k=k, out_hw=out_hw,
                                                    stride=stride, dilation=dilation, pad=pad, **common)
                              for sample in x])
        scales = float(inp.scale) * np.broadcast_to(filt.scales.astype(np.float64), (packed.rows,)) / float(out.scale)
        multipliers, shifts = requant.quantize_multipliers(scales)
        y = requant.multiply_by_quantized_multiplier(acc, multipliers, shifts)
    lo, hi = requant.activation_range(op.options.get("fused_activation_function", "NONE"), out.scale, out.zero_point)
    return np.clip(y + out.zero_point, lo, hi).astype(np.int8).reshape(len(x), *out.shape)


def check_layers_against_numpy(tflite: bytes, inputs: np.ndarray, info) -> int:
    """Every low-bit layer's outputs from LiteRT's inputs of it: equal to LiteRT's outputs.
    Returns the number of layers checked."""
    graph = read_tflite(tflite)
    lowbit = {t["op"] for t in info.weight_storage if t["format"] != "dense"}
    ops = [op for op in graph.ops if op.index in lowbit]
    tensors = [i for op in ops for i in (op.inputs[0], op.outputs[0])]
    _, *values = litert_reference(tflite, inputs, tuple(tensors))
    for n, op in enumerate(ops):
        np.testing.assert_array_equal(reference_layer(graph, op, values[2 * n]), values[2 * n + 1],
                                      err_msg=f"op {op.index} {op.name}")
    return len(ops)


# ------------------------------------------------------------------ generated libraries

@pytest.fixture(scope="module")
def models():
    """graph name -> (tflite, inputs, LiteRT's outputs)."""
    made = {}

    def get(name: str):
        if name not in made:
            tflite = GRAPHS[name]()
            inputs = random_inputs(tflite, SAMPLES)
            (ref,) = litert_reference(tflite, inputs)
            assert len(np.unique(ref)) > 3, "degenerate reference outputs: the comparison would mean little"
            made[name] = tflite, inputs, ref
        return made[name]

    return get


@needs_litert
def test_library_figures_and_formats(models, tmp_path):
    tflite = models("binary-fc")[0]
    dense = generate_library(tflite, "m", tmp_path / "dense")
    lowbit = generate_library(tflite, "m", tmp_path / "lowbit", storage=LOWBIT)
    assert {t["format"] for t in dense.weight_storage} == {"dense"}
    fc = lowbit.weight_storage[0]
    # 250 inputs: 8 words of 32 per output channel, 64 channels: 2048 B for 16000 B of int8
    assert (fc["format"], fc["decode"], fc["stored_bytes"], fc["dense_bytes"]) == ("binary 1-bit", "kernel", 2048, 16000)
    assert fc["stored_bytes"] <= fc["dense_bytes"] / 6
    saved = sum(t["dense_bytes"] - t["stored_bytes"] for t in lowbit.weight_storage)
    assert lowbit.weight_bytes == dense.weight_bytes - saved
    assert lowbit.arena_bytes >= 256 * 8  # the subset-sum tables of 250 inputs
    source = (tmp_path / "lowbit" / "m.c").read_text()
    assert "static const uint32_t t1_bits[512]" in source and "ep_fully_connected_lowbit_s8(&op0" in source
    assert "static const int8_t t1[" not in source
    formats = {name: [t["format"] for t in generate_library(models(name)[0], "m", tmp_path / name,
                                                              storage=LOWBIT).weight_storage]
               for name in ("ternary-conv", "xnor-fc", "xnor-conv")}
    assert formats == {"ternary-conv": ["ternary 2-bit", "ternary 2-bit", "dense", "ternary 2-bit"],
                       "xnor-fc": ["dense", "binary 1-bit xnor", "ternary 2-bit xnor", "dense"],
                       "xnor-conv": ["dense", "binary 1-bit xnor", "ternary 2-bit xnor", "binary 1-bit xnor"]}
    info = generate_library(models("binary-conv")[0], "m", tmp_path / "conv", storage=LOWBIT)
    assert any("no low-bit kernel for DEPTHWISE_CONV_2D: int8" in note for note in info.notes)
    source = (tmp_path / "xnor-fc" / "m.c").read_text()
    assert ".one = 127, .step = 255, .other_offset = -128" in source and "op3_row_constant" in source
    assert "ep_compare_range_s8(&op1" in source and "ep_select_s8(&op2, (const uint8_t *)" in source


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
@pytest.mark.parametrize("name", GRAPHS)
def test_bit_exact_on_the_host(models, name, variant, tmp_path):
    """LiteRT's bytes with and without low-bit storage (the sign pattern runs either way), and
    every low-bit layer equal to the NumPy reference."""
    tflite, inputs, ref = models(name)
    for storage in (None, LOWBIT):
        lib = tmp_path / str(storage is not None)
        info = generate_library(tflite, "m", lib, storage=storage)
        got = run_c(lib, "m", "m_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path,
                    DSP_VARIANTS[variant])
        np.testing.assert_array_equal(got, ref)
    assert check_layers_against_numpy(tflite, inputs, info) >= 2


@pytest.mark.e2e
@needs_litert
@needs_gcc
def test_lowbit_with_compressed_storage_of_the_other_filters(models, tmp_path):
    """Low-bit filters packed, the int8 ones compressed as asked (decoded once at init): still LiteRT's bytes."""
    tflite, inputs, ref = models("xnor-fc")
    storage = WeightStorage(lowbit=True, palette=True, sparse=True, huffman=True, decode="init")
    info = generate_library(tflite, "m", tmp_path / "lib", storage=storage)
    assert [t["format"] for t in info.weight_storage][1:3] == ["binary 1-bit xnor", "ternary 2-bit xnor"]
    got = run_c(tmp_path / "lib", "m", "m_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("op", ["GREATER_EQUAL", "GREATER", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL"])
def test_comparisons_and_select_are_bit_exact(op, tmp_path):
    """Scaled comparisons (general, broadcast, against a constant: an interval) and SELECT_V2 with
    broadcast tensors and scalars; inputs near the zero point so that equality happens."""
    tflite = tflite_graphs.comparison_graph(op)
    inputs = np.random.default_rng(3).integers(-9, 4, (SAMPLES, 1, 4, 5, 3)).astype(np.int8)
    (ref,) = litert_reference(tflite, inputs)
    assert len(np.unique(ref)) > 3
    generate_library(tflite, "m", tmp_path / "lib")
    source = (tmp_path / "lib" / "m.c").read_text()
    assert source.count("ep_compare_s8(") == 2 and source.count("ep_compare_range_s8(") == 1
    for variant in DSP_VARIANTS.values():
        got = run_c(tmp_path / "lib", "m", "m_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path,
                    variant)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.e2e
@needs_litert
@needs_torch
@needs_gcc
def test_a_converted_sign_module_runs(tmp_path):
    """A PyTorch model with edgeport.training.lowbit.Sign, converted to int8 by litert-torch (PT2E, as
    the int8 exporter does): GREATER_EQUAL + SELECT_V2 as expected, and the library gives LiteRT's bytes."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeport.exporters.tflite import _convert
    from edgeport.training.lowbit import Sign

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), Sign(), torch.nn.Linear(24, 8)).eval()
    example = (torch.randn(1, 16),)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    with torch.no_grad():
        for _ in range(16):
            prepared(torch.randn(1, 16))
    tflite = _convert(convert_pt2e(prepared, fold_quantize=False), example, QuantConfig(pt2e_quantizer=quantizer))
    graph = read_tflite(tflite)
    assert [op.name for op in graph.ops] == ["FULLY_CONNECTED", "GREATER_EQUAL", "SELECT_V2", "FULLY_CONNECTED"]
    assert two_values(graph, graph.ops[3].inputs[0]) == (127, -128)
    inputs = random_inputs(tflite, SAMPLES)
    (ref,) = litert_reference(tflite, inputs)
    generate_library(tflite, "m", tmp_path / "lib", storage=LOWBIT)
    got = run_c(tmp_path / "lib", "m", "m_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path)
    np.testing.assert_array_equal(got, ref)


# ------------------------------------------------------------------ Cortex-M

@pytest.fixture(scope="module")
def dense_flash(models, tmp_path_factory):
    """Flash of the int8 library's weights (ELF) of the binary FC graph, on the Cortex-M4."""
    if MISSING:
        pytest.skip("; ".join(MISSING))
    lib = tmp_path_factory.mktemp("dense")
    generate_library(models("binary-fc")[0], "m", lib)
    return elf_breakdown(build_firmware(lib, "m", "mps2-an386", lib / "build").elf, "m")["flash"]["weights"]


@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("cpu", BOARDS)
@pytest.mark.parametrize("name", QEMU_GRAPHS)
def test_bit_exact_in_qemu(models, dense_flash, name, cpu, tmp_path):
    tflite, inputs, ref = models(name)
    info = generate_library(tflite, "m", tmp_path / "lib", storage=LOWBIT)
    fw = build_firmware(tmp_path / "lib", "m", BOARDS[cpu], tmp_path / "build")
    got = run_qemu(fw, inputs.reshape(len(inputs), -1))
    np.testing.assert_array_equal(got, ref.reshape(len(ref), -1))
    check_layers_against_numpy(tflite, inputs, info)
    flash = elf_breakdown(fw.elf, "m")["flash"]["weights"]
    assert info.weight_bytes <= flash <= info.weight_bytes + 1024
    if name == "binary-fc":
        saved = sum(t["dense_bytes"] - t["stored_bytes"] for t in info.weight_storage)
        assert dense_flash - flash >= saved - 512 and saved >= 0.8 * (16000 + 640)


@pytest.mark.e2e
@needs_arm_gcc
@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m4"])
def test_no_multiply_in_the_inner_loops(models, cpu, tmp_path):
    """The functions that run per word of weights (subset-sum lookups, XOR / AND popcounts) hold no
    multiply instruction (objdump of ep_lowbit.o as the firmware compiles it, -O2)."""
    obj = tmp_path / "ep_lowbit.o"
    subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-mcpu={cpu}", "-mthumb", "-O2", "-c", "-Wall", "-Wextra",
                    "-Werror", f"-I{KERNEL_DIR}", "-o", str(obj), str(KERNEL_DIR / "ep_lowbit.c")], check=True)
    for function in INNER_LOOPS:
        dump = subprocess.run(["arm-none-eabi-objdump", "-d", f"--disassemble={function}", str(obj)],
                              capture_output=True, text=True, check=True).stdout
        body = dump.split(f"<{function}>:", 1)[1]
        assert "ldr" in body and not MULTIPLIES.findall(body), (function, MULTIPLIES.findall(body))


@pytest.mark.e2e
@needs_litert
@needs_arm_gcc
@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"])
def test_builds_warning_free_for_cortex_m(models, cpu, tmp_path):
    for name in ("binary-conv", "xnor-conv", "ternary-fc"):
        lib = tmp_path / name
        generate_library(models(name)[0], "m", lib, storage=LOWBIT)
        for source in sorted(lib.glob("*.c")):
            result = subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-mcpu={cpu}", "-mthumb", "-Os", "-c", "-Wall",
                                     "-Wextra", "-Werror", "-o", str(tmp_path / f"{source.stem}.o"), str(source)],
                                    capture_output=True, text=True, check=False)
            assert result.returncode == 0, result.stderr


def single_fc_graph(kind: str, sign: bool = False) -> bytes:
    """int8 [1, 256] (-> sign) -> FULLY_CONNECTED 256 -> 64, `kind` weights, per-channel scales."""
    g = tflite_graphs.GraphBuilder(31)
    x = g.activation("input", (1, 256), 0.05, -7)
    weights = tflite_graphs.binary_weights if kind == "binary" else tflite_graphs.ternary_weights()
    y = g.fully_connected(g.sign(x) if sign else x, 64, per_channel=True, weights=weights)
    return g.build([x], [y])


@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("cpu", BOARDS)
def test_instruction_counts_against_int8(cpu, tmp_path):
    """One inference of a 256 -> 64 FULLY_CONNECTED, counted in unicorn: binary weights on int8
    inputs (add/subtract) and on a sign's outputs (XNOR) against the same layer with int8 weights.
    The low-bit layers execute a few multiplies per output (requantization), none per weight."""
    pytest.importorskip("unicorn", reason="unicorn is not installed (pip install 'edgeport[mcu]')")
    from edgeport.mcu.toolchain.icount import count_instructions

    board, counts = BOARDS[cpu], {}
    for case, tflite in (("binary", single_fc_graph("binary")), ("xnor", single_fc_graph("binary", sign=True))):
        x = random_inputs(tflite, 1)
        for storage in (None, LOWBIT):
            label = f"{case} {'lowbit' if storage else 'int8'}"
            lib = tmp_path / label.replace(" ", "_")
            generate_library(tflite, "m", lib, storage=storage)
            fw = build_firmware(lib, "m", board, lib / "build")
            counts[label] = count_instructions(fw.elf, "m", board, x.tobytes())
            np.testing.assert_array_equal(counts[label]["outputs"], litert_reference(tflite, x)[0].ravel())
    print(f"\n{cpu}: " + ", ".join(f"{label} {c['instructions']:,}" for label, c in counts.items()))
    for case in ("binary", "xnor"):
        assert counts[f"{case} lowbit"]["instructions"] < counts[f"{case} int8"]["instructions"]
    multiplies = ("mul", "mla", "mul_long", "mla_long", "dsp_mac")
    for label, c in counts.items():
        executed = sum(c["mix"].get(cls, 0) for cls in multiplies)
        if label.endswith("lowbit"):
            assert executed <= 16 * 64, (label, c["mix"])
        else:
            assert executed >= 256 * 64 / 2, (label, c["mix"])
    if cpu == "cortex-m0":  # no SMLAD: add/subtract wins by far
        assert counts["binary lowbit"]["instructions"] < counts["binary int8"]["instructions"] / 2.5
        assert counts["xnor lowbit"]["instructions"] < counts["xnor int8"]["instructions"] / 3
