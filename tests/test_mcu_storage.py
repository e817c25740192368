"""Weights stored compressed in the Cortex-M C library (edgeport.mcu.compiler.storage, lowering_compressed,
kernels/ep_compressed.c): the encoders as pure functions with exact byte counts, then libraries
with palette / CSR / Huffman storage, decoded by the kernels or once at init, built for Cortex-M4
(DSP path) and Cortex-M0 (plain C), run in QEMU and compared byte for byte with LiteRT's
reference kernels, with the flash their weights take against dense int8.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pytest

from edgeport.errors import InputError
from edgeport.mcu.compiler import lowering_compressed
from edgeport.mcu.compiler import storage as st
from edgeport.mcu.compiler.codegen import generate_library
from edgeport.mcu.compiler.storage import WeightStorage
from edgeport.mcu.toolchain.elfsize import elf_breakdown
from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu, toolchain_missing

from conftest import (
    DSP_VARIANTS,
    MCU_MODELS,
    check_bit_exact,
    litert_reference,
    needs_arm_gcc,
    needs_gcc,
    needs_litert,
    random_inputs,
    run_c,
)
from testmodels import tflite_graphs

MISSING = toolchain_missing()
needs_toolchain = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
SAMPLES = 20
STORAGES = {
    "palette": WeightStorage(palette=True),
    "sparse": WeightStorage(sparse=True),
    "sparse+palette+huffman": WeightStorage(palette=True, sparse=True, huffman=True),
}
MORE_STORAGES = {  # the other combinations, checked on the host
    "palette+huffman": WeightStorage(palette=True, huffman=True),
    "sparse+palette": WeightStorage(palette=True, sparse=True),
    "sparse+huffman": WeightStorage(sparse=True, huffman=True),
}
FC90 = "fc15 (op 5)"  # compressible_graph's FULLY_CONNECTED 256 -> 64 with 90% zeros


# ------------------------------------------------------------------ pure functions

def test_weight_storage_is_validated():
    assert not WeightStorage().compresses and WeightStorage(sparse=True).compresses
    with pytest.raises(InputError, match="known: kernel, init"):
        WeightStorage(palette=True, decode="lazy")
    with pytest.raises(InputError, match="combine it with palette and/or sparse"):
        WeightStorage(huffman=True)
    with pytest.raises(InputError, match="true or false"):
        WeightStorage(palette="yes")


def test_palette_packing():
    assert [st.palette_bits(n) for n in (1, 2, 3, 4, 5, 16, 17, 128)] == [1, 1, 2, 2, 3, 4, 5, 7]
    assert st.palette_bits(129) is None
    # 2-bit symbols 1, 2, 3, LSB first: bits 10 01 11 -> 0b111001; 3-bit symbols cross bytes
    assert st.pack_bits([1, 2, 3], 2) == bytes([0b00111001])
    assert st.pack_bits([5, 6, 7], 3) == bytes([0b11110101, 0b1])
    with pytest.raises(ValueError):
        st.pack_bits([4], 2)
    symbols = np.random.default_rng(0).integers(0, 1 << 5, 1001)
    assert len(st.pack_bits(symbols, 5)) == -(-1001 * 5 // 8)
    np.testing.assert_array_equal(st.unpack_bits(st.pack_bits(symbols, 5), 5, 1001), symbols)

    matrix = np.array([[0, 7, -7, 7], [-128, 0, 0, 7]], np.int8)
    table = st.palette(matrix)
    assert table.lut.tolist() == [[-128, -7, 0, 7]] and table.bits == 2 and not table.per_channel
    assert table.indices.tolist() == [2, 3, 1, 3, 0, 2, 2, 3]
    rows = st.channel_palette(matrix.ravel(), [4, 4])
    assert rows.lut.tolist() == [[-7, 0, 7], [-128, 0, 7]] and rows.bits == 2
    assert rows.indices.tolist() == [1, 2, 0, 2, 0, 1, 1, 2]
    packed = st.palette_weights(matrix)
    assert (packed.format, packed.nbytes) == ("palette 2-bit", 2 + 4)  # 8 x 2 bits + a 4-entry table
    np.testing.assert_array_equal(packed.decode(), matrix)
    # 150 values in all, 16 per row: one table per output channel (16 x 16 + 1024 x 4 bits < 1024 B)
    wide = tflite_graphs.pruned_palettized(0.2, per_channel=True)(np.random.default_rng(1), (16, 64))
    assert len(np.unique(wide)) > 128
    packed, notes = st.pack_weights(wide, WeightStorage(palette=True))
    assert (packed.format, packed.nbytes, notes) == ("palette 4-bit per-channel", 16 * 16 + 512, [])
    np.testing.assert_array_equal(packed.decode(), wide)


def test_relative_csr_with_fillers_round_trips():
    # one row: 20 zeros, then 5. With 3-bit relative indices (at most 7 zeros skipped), two fillers
    # (each skips 7 zeros and stands on an 8th), then skip 4 and store the 5.
    row = np.zeros((1, 24), np.int8)
    row[0, 20] = 5
    csr = st.relative_csr(row, 3)
    assert (csr.counts.tolist(), csr.gaps.tolist(), csr.values.tolist()) == ([3], [7, 7, 4], [0, 0, 5])
    np.testing.assert_array_equal(st.csr_to_dense(csr, 24), row)
    # a gap of exactly 2^bits - 1 zeros needs no filler, 2^bits needs one; rows restart at -1
    edge = np.zeros((2, 20), np.int8)
    edge[0, 7], edge[1, 8], edge[1, 15] = 1, -1, 2
    csr = st.relative_csr(edge, 3)
    assert (csr.counts.tolist(), csr.gaps.tolist(), csr.values.tolist()) == ([1, 3], [7, 7, 0, 6], [1, 0, -1, 2])
    rng = np.random.default_rng(2)
    for bits in range(1, st.MAX_GAP_BITS + 1):
        matrix = np.where(rng.random((7, 90)) < 0.85, 0, rng.integers(-128, 128, (7, 90))).astype(np.int8)
        matrix[3] = 0  # an empty row
        csr = st.relative_csr(matrix, bits)
        assert csr.gaps.max() < 1 << bits and csr.counts[3] == 0
        np.testing.assert_array_equal(st.csr_to_dense(csr, 90), matrix)
        for flags in ({}, {"use_palette": True}, {"use_palette": True, "huffman": True}, {"huffman": True}):
            np.testing.assert_array_equal(st.csr_weights(matrix, **flags).decode(), matrix)


def test_huffman_round_trip():
    lengths = st.huffman_lengths([45, 13, 12, 16, 9, 5])  # the textbook example: a 0, b 101, c 100, ...
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4]
    assert st.canonical_codes(lengths).tolist() == [0b0, 0b100, 0b101, 0b110, 0b1110, 0b1111]
    assert st.huffman_codebook(lengths) == bytes([4, 1, 0, 3, 2, 0, 1, 2, 3, 4, 5])
    # "a" (0) then "f" (1111) then "b" (100): stream bits 0 1111 100 (first bit = bit 0 of a byte)
    assert st.huffman_encode([0, 5, 1], lengths) == bytes([0b00111110])
    assert st.huffman_lengths([0, 9, 0]).tolist() == [0, 1, 0]  # a lone symbol: one bit
    rng = np.random.default_rng(3)
    for alphabet, limit in ((16, 15), (256, 15), (40, 8)):
        # geometric counts (codes up to ~alphabet bits long unless limited), every 5th symbol unused
        frequencies = (1.5 ** np.minimum(np.arange(alphabet), 60)).astype(np.int64) * (np.arange(alphabet) % 5 != 4)
        lengths = st.huffman_lengths(frequencies, limit)
        used = frequencies > 0
        assert lengths.max() <= limit and np.all((lengths > 0) == used)
        assert np.sum(2.0 ** -lengths[used]) <= 1.0  # Kraft: a prefix code
        symbols = rng.choice(np.flatnonzero(used), 3000, p=frequencies[used] / frequencies[used].sum())
        coded = st.huffman_encode(symbols, lengths)
        assert len(coded) == -(-int(lengths[symbols].sum()) // 8)
        np.testing.assert_array_equal(st.huffman_decode(coded, st.huffman_codebook(lengths), len(symbols)), symbols)
    # a stream only Huffman-codes when that is smaller, codebook included
    skewed = np.r_[np.zeros(500, int), np.arange(1, 8)]
    assert st.encode_stream(skewed, 3, huffman=True).codebook is not None
    assert st.encode_stream(np.arange(8).repeat(10), 3, huffman=True).codebook is None


@needs_litert
def test_storage_stages_exact_bytes():
    """A 4 x 32 FULLY_CONNECTED filter: rows of 24 nonzeros then 8 zeros; 93 weights 3 and one
    each of -3, 5, -5. Stage by stage:
    - dense: 128 int8.
    - pruned: 1-bit relative indices (all 0: no gaps in the runs) 96 bits = 12 B, 96 int8 values,
      4 one-byte row counts: 112 B (2-bit indices would take 124 B).
    - clustered: the same with 2-bit palette indices (24 B) + a 4-value palette: 12 + 28 + 4 = 44 B.
    - huffman: the value stream Huffman-coded: codes of 1, 2, 3, 3 bits for 93, 1, 1, 1 values,
      101 bits = 13 B + codebook [3, 1, 1, 2, symbols x4] 8 B. Coded as int8 symbols, the codebook
      is the palette (indices would add the 4-byte table for the same codes); the index stream of
      one symbol stays fixed-width (a code takes a bit too): 12 + 21 + 4 = 37 B."""
    weights = np.zeros((4, 32), np.int8)
    weights[:, :24] = 3
    weights[0, :3] = [-3, 5, -5]
    g = tflite_graphs.GraphBuilder(0)
    x = g.activation("input", (1, 32), 0.05, 0)
    y = g.fully_connected(x, 4, weights=lambda rng, shape: weights)
    (row,) = st.storage_stages(g.build([x], [y]), "hand.tflite")
    assert row == {"op": 0, "op_name": "FULLY_CONNECTED", "layer": "fc3 (op 0)", "tensor": "fc_w1", "shape": [4, 32],
                   "count": 128, "nonzeros": 96, "dense": 128, "pruned": 112, "clustered": 44, "huffman": 37,
                   "index_bits": 1, "palette_bits": 2, "bias_bytes": 16}
    assert st.stage_totals([row, {**row, "clustered": None}]) == {
        "dense": 256, "pruned": 224, "clustered": 44 + 112, "huffman": 74, "bias_bytes": 32}


@needs_litert
def test_storage_stages_of_a_pruned_palettized_model():
    rows = {r["layer"]: r for r in st.storage_stages(tflite_graphs.compressible_graph())}
    assert [r["op_name"] for r in rows.values()] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED",
                                                      "FULLY_CONNECTED"]
    fc = rows[FC90]
    assert (fc["shape"], fc["count"], fc["palette_bits"]) == ([64, 256], 16384, 4)
    assert 0.08 < fc["nonzeros"] / fc["count"] < 0.12
    assert fc["dense"] > fc["pruned"] > fc["clustered"] >= fc["huffman"]
    assert fc["pruned"] <= 0.2 * fc["dense"] and fc["huffman"] <= 0.13 * fc["dense"]


# ------------------------------------------------------------------ generated libraries

@pytest.fixture(scope="module")
def model():
    """compressible_graph, its inputs and LiteRT's reference outputs."""
    tflite = tflite_graphs.compressible_graph()
    inputs = random_inputs(tflite, SAMPLES)
    (ref,) = litert_reference(tflite, inputs)
    assert len(np.unique(ref)) > 3, "degenerate reference outputs: the comparison would mean little"
    return tflite, inputs, ref


def _storage(name: str, decode: str) -> WeightStorage:
    return replace({**STORAGES, **MORE_STORAGES}[name], decode=decode)


def _tensors(info) -> dict[str, dict]:
    return {t["layer"]: t for t in info.weight_storage}


@needs_litert
def test_default_storage_is_todays_dense_library(model, tmp_path):
    tflite = model[0]
    plain = generate_library(tflite, "m", tmp_path / "plain")
    for storage in (None, WeightStorage(), WeightStorage(decode="init")):
        info = generate_library(tflite, "m", tmp_path / "again", storage=storage)
        for file in ("m.c", "m.h"):
            assert (tmp_path / "again" / file).read_bytes() == (tmp_path / "plain" / file).read_bytes()
        assert info.to_dict()["weight_storage"] == plain.weight_storage and info.decoded_bytes == 0
    assert {t["format"] for t in plain.weight_storage} == {"dense"} and len(plain.weight_storage) == 5
    assert sum(t["stored_bytes"] for t in plain.weight_storage) == 432 + 216 + 192 + 16384 + 1024


@needs_litert
def test_library_figures_and_interface(model, tmp_path):
    tflite = model[0]
    dense = generate_library(tflite, "m", tmp_path / "dense")
    kernel = generate_library(tflite, "m", tmp_path / "kernel", storage=STORAGES["palette"])
    init = generate_library(tflite, "m", tmp_path / "init", storage=_storage("palette", "init"))
    fc = _tensors(kernel)[FC90]
    assert (fc["format"], fc["decode"], fc["dense_bytes"]) == ("palette 4-bit", "kernel", 16384)
    assert fc["stored_bytes"] == 16384 // 2 + 16 <= 0.55 * fc["dense_bytes"]
    saved = sum(t["dense_bytes"] - t["stored_bytes"] for t in kernel.weight_storage)
    assert kernel.weight_bytes == init.weight_bytes == dense.weight_bytes - saved
    # decoded once: every compressed tensor in a static buffer, counted in the RAM figures
    assert init.decoded_bytes == 18_256 and kernel.decoded_bytes == 0 and dense.decoded_bytes == 0
    assert init.ram_bytes == init.arena_bytes + init.decoded_bytes + init.input_size + init.output_size
    assert init.to_dict()["ram_bytes"] == init.ram_bytes
    assert kernel.arena_bytes >= dense.arena_bytes  # a row of scratch for the kernels that decode
    header, source = (tmp_path / "init" / "m.h").read_text(), (tmp_path / "init" / "m.c").read_text()
    assert "#define M_DECODED_SIZE 18256" in header and "int m_init(void);" in header
    assert "static int8_t decoded_weights[M_DECODED_SIZE] EP_ALIGN16;" in source
    assert source.count("ep_weights_decode(&") == 5 and "(void)m_init();" in source
    assert "ep_fully_connected_s8(&op5" in source and "_packed_s8" not in source
    source = (tmp_path / "kernel" / "m.c").read_text()
    assert "#define M_DECODED_SIZE 0" in (tmp_path / "kernel" / "m.h").read_text()
    assert "ep_fully_connected_packed_s8(&op5" in source and "ep_depthwise_conv2d_packed_s8(&op1" in source
    assert "decoded_weights" not in source and "static const int8_t t13[" not in source


@pytest.mark.e2e
@needs_litert
@needs_gcc
def test_models_without_compressible_weights_stay_dense_with_notes(tmp_path):
    """Uniform random int8 weights: no palette fits, CSR and Huffman would not be smaller."""
    tflite = tflite_graphs.ops_graph()
    info = generate_library(tflite, "ops", tmp_path / "lib", storage=STORAGES["sparse+palette+huffman"])
    assert {t["format"] for t in info.weight_storage} == {"dense"}
    assert any("distinct values" in n and "no palette" in n for n in info.notes)
    assert any("not sparse" in n for n in info.notes)
    inputs = random_inputs(tflite, SAMPLES)
    (ref,) = litert_reference(tflite, inputs)
    got = run_c(tmp_path / "lib", "ops", "ops_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
@pytest.mark.parametrize("decode", ["kernel", "init"])
@pytest.mark.parametrize("storage", [*STORAGES, *MORE_STORAGES])
def test_every_combination_is_bit_exact_on_the_host(model, storage, decode, variant, tmp_path):
    tflite, inputs, ref = model
    info = generate_library(tflite, "m", tmp_path / "lib", storage=_storage(storage, decode))
    assert {t["decode"] for t in info.weight_storage if t["format"] != "dense"} == {decode}
    got = run_c(tmp_path / "lib", "m", "m_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8, tmp_path,
                DSP_VARIANTS[variant])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("decode", ["kernel", "init"])
def test_edge_cases_are_bit_exact_on_the_host(decode, tmp_path):
    """Two batches; a CSR row of 512 entries (2-byte row counts) among sparse rows and an all-zero
    output channel; an all-zero tensor (a CSR without any entry: no streams at all)."""
    def first_row_dense(rng, shape):
        weights = np.where(rng.random(shape) < 0.8, 0, rng.integers(-127, 128, shape)).astype(np.int8)
        weights[0] = rng.integers(1, 128, shape[1])
        weights[3] = 0
        return weights

    g = tflite_graphs.GraphBuilder(11)
    x = g.activation("input", (2, 512), 0.05, -7)
    h = g.fully_connected(x, 8, act="RELU", weights=first_row_dense)
    y = g.fully_connected(h, 4, weights=lambda rng, shape: np.zeros(shape, np.int8))
    tflite = g.build([x], [y])
    info = generate_library(tflite, "edge", tmp_path / "lib", storage=WeightStorage(sparse=True, huffman=True,
                                                                                     decode=decode))
    formats = [t["format"] for t in info.weight_storage]
    assert formats[0].startswith("csr") and formats[1] == "csr" and info.weight_storage[1]["stored_bytes"] == 4
    source = (tmp_path / "lib" / "edge.c").read_text()
    assert ".count_bytes = 2" in source and ".values = NULL, .value_code = NULL, .lut = NULL, .gaps = NULL" in source
    inputs = random_inputs(tflite, SAMPLES)
    (ref,) = litert_reference(tflite, inputs)
    for variant in DSP_VARIANTS.values():
        got = run_c(tmp_path / "lib", "edge", "edge_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8,
                    tmp_path, variant)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("variant", DSP_VARIANTS)
@pytest.mark.parametrize("form", ["csr", "palette"])
@pytest.mark.parametrize("model", ["kws", "ops", "layout", "conv"])
def test_kernel_corners_with_forced_storage(model, form, variant, monkeypatch, tmp_path):
    """test_mcu_codegen's models (dilation, padding, strides, depth multipliers, groups, batches,
    float I/O, MLPerf Tiny KWS) have uniform random weights that no storage makes smaller: forced
    into CSR + Huffman (palette where one fits) or palette (CSR where none fits) anyway, every
    packed kernel path must still give LiteRT's bytes."""
    force = {"csr": lambda m: st.csr_weights(m, use_palette=True, huffman=True),
             "palette": lambda m: st.palette_weights(m, huffman=True) or st.csr_weights(m)}[form]
    monkeypatch.setattr(lowering_compressed, "pack_weights", lambda matrix, storage: (force(matrix), []))
    info = check_bit_exact(MCU_MODELS[model](), model, tmp_path, DSP_VARIANTS[variant], storage=STORAGES["palette"])
    assert info.weight_storage and all(t["format"] != "dense" for t in info.weight_storage)


@pytest.fixture(scope="module")
def dense_firmware_weights(model, tmp_path_factory):
    """Flash of the dense library's weights (ELF .rodata of m.o) on the Cortex-M4."""
    if MISSING:
        pytest.skip("; ".join(MISSING))
    lib = tmp_path_factory.mktemp("dense")
    generate_library(model[0], "m", lib)
    fw = build_firmware(lib, "m", "mps2-an386", lib / "build")
    return elf_breakdown(fw.elf, "m")["flash"]["weights"]


def _run_in_qemu(model, storage: WeightStorage, board: str, tmp_path):
    tflite, inputs, ref = model
    info = generate_library(tflite, "m", tmp_path / "lib", storage=storage)
    fw = build_firmware(tmp_path / "lib", "m", board, tmp_path / "build")
    got = run_qemu(fw, inputs.reshape(len(inputs), -1))
    np.testing.assert_array_equal(got, ref.reshape(len(ref), -1))
    return info, elf_breakdown(fw.elf, "m")


@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("decode", ["kernel", "init"])
@pytest.mark.parametrize("storage", STORAGES)
def test_bit_exact_in_qemu_on_cortex_m4(model, dense_firmware_weights, storage, decode, tmp_path):
    info, sizes = _run_in_qemu(model, _storage(storage, decode), "mps2-an386", tmp_path)
    fc = _tensors(info)[FC90]
    limit = {"palette": 0.55, "sparse": 0.3, "sparse+palette+huffman": 0.15}[storage]
    assert fc["stored_bytes"] <= limit * fc["dense_bytes"], fc
    # the const arrays counted are the flash the ELF holds (plus the small parameter structs)
    assert info.weight_bytes <= sizes["flash"]["weights"] <= info.weight_bytes + 1024
    saved = sum(t["dense_bytes"] - t["stored_bytes"] for t in info.weight_storage)
    assert dense_firmware_weights - sizes["flash"]["weights"] >= saved - 512
    if decode == "init":  # the decoded weights are static RAM of the library
        assert sizes["ram"]["library_ram"] >= info.decoded_bytes > 0.9 * 18_000


@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("storage", STORAGES)
def test_bit_exact_in_qemu_on_cortex_m0(model, storage, tmp_path):
    """Plain C (no DSP extension), decoded by the kernels: the library fits the micro:bit's 16 KB RAM."""
    info, sizes = _run_in_qemu(model, STORAGES[storage], "microbit", tmp_path)
    assert info.decoded_bytes == 0 and sizes["ram"]["library_ram"] < 64


@pytest.mark.e2e
@needs_litert
@needs_arm_gcc
@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"])
def test_builds_warning_free_for_cortex_m(model, cpu, tmp_path):
    for decode in ("kernel", "init"):
        lib = tmp_path / decode
        generate_library(model[0], "m", lib, storage=_storage("sparse+palette+huffman", decode))
        for source in sorted(lib.glob("*.c")):
            result = subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-mcpu={cpu}", "-mthumb", "-Os", "-c", "-Wall",
                                     "-Wextra", "-Werror", "-o", str(tmp_path / f"{source.stem}.o"), str(source)],
                                    capture_output=True, text=True, check=False)
            assert result.returncode == 0, result.stderr
