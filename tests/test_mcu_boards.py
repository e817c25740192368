"""Cortex-M boards: firmware builds for every core, runs in QEMU, instruction counts in unicorn,
flash/RAM breakdown, integration files, and the errors a user meets.

The library under test is a stand-in with the generator's contract (`<name>.h/.c`, a kernel in
`kernels/`, static const weights, one static arena): a two-layer int8 MLP whose kernel uses SMLAD
on cores with the DSP extension. Its arithmetic is reproduced in NumPy and compared exactly.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeport.errors import InputError, RuntimeGap
from edgeport.mcu.toolchain.boards import (
    BOARDS,
    CORES,
    INSTRUCTION_CLASSES,
    M4_CYCLES,
    board,
    core_of,
)
from edgeport.mcu.toolchain.elfsize import elf_breakdown
from edgeport.mcu.toolchain.firmware import (
    FirmwareBuildError,
    FirmwareRunError,
    MissingToolchainError,
    build_firmware,
    run_qemu,
    toolchain_missing,
    write_integration_files,
)

MISSING = toolchain_missing()
needs_toolchain = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
needs_unicorn = pytest.mark.skipif(importlib.util.find_spec("unicorn") is None,
                                   reason="unicorn is not installed (pip install 'edgeport[mcu]')")

QEMU_BOARDS = ("microbit", "mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547")
UNICORN_BOARDS = QEMU_BOARDS[:-1]  # unicorn has no Cortex-M55
NAME = "standin"
IN, HIDDEN, OUT = 64, 32, 8
# (input zero point, multiplier, shift, output zero point, lower clamp) per layer
LAYERS = ((-3, 1518500250, 40, -128, -128), (-128, 1276901222, 38, 5, -128))

KERNEL_H = """\
#ifndef EP_FC_H
#define EP_FC_H
#include <stdint.h>
void ep_fc(const int8_t *x, int32_t x_zp, const int8_t *w, const int32_t *bias, int n_in, int n_out,
           int32_t mult, int shift, int32_t out_zp, int32_t lo, int8_t *y);
#endif
"""

KERNEL_C = """\
#include "ep_fc.h"
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

static int32_t dot(const int8_t *x, int32_t x_zp, const int8_t *w, int n, int32_t acc) {
    int i = 0;
#if defined(__ARM_FEATURE_DSP)
    for (; i + 1 < n; i += 2) {
        uint32_t xs = (uint16_t)(int16_t)(x[i] - x_zp) | ((uint32_t)(uint16_t)(int16_t)(x[i + 1] - x_zp) << 16);
        uint32_t ws = (uint16_t)(int16_t)w[i] | ((uint32_t)(uint16_t)(int16_t)w[i + 1] << 16);
        acc = __smlad((int32_t)xs, (int32_t)ws, acc);
    }
#endif
    for (; i < n; i++) {
        acc += (x[i] - x_zp) * w[i];
    }
    return acc;
}

void ep_fc(const int8_t *x, int32_t x_zp, const int8_t *w, const int32_t *bias, int n_in, int n_out,
           int32_t mult, int shift, int32_t out_zp, int32_t lo, int8_t *y) {
    for (int o = 0; o < n_out; o++) {
        int32_t acc = dot(x, x_zp, w + o * n_in, n_in, bias[o]);
        int32_t v = (int32_t)(((int64_t)acc * mult + ((int64_t)1 << (shift - 1))) >> shift) + out_zp;
        y[o] = (int8_t)(v < lo ? lo : (v > 127 ? 127 : v));
    }
}
"""


def standin_params(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(-127, 128, (n_out, n_in)), rng.integers(-2000, 2000, n_out))
            for n_in, n_out in ((IN, HIDDEN), (HIDDEN, OUT))]


def write_standin(lib: Path, params) -> Path:
    """The stand-in library: standin.h/.c (weights, arena, invoke) and kernels/ep_fc.{h,c}."""
    (lib / "kernels").mkdir(parents=True)
    (lib / "kernels" / "ep_fc.h").write_text(KERNEL_H)
    (lib / "kernels" / "ep_fc.c").write_text(KERNEL_C)
    (lib / f"{NAME}.h").write_text(
        f"#ifndef STANDIN_H\n#define STANDIN_H\n#include <stdint.h>\n#define STANDIN_INPUT_SIZE {IN}\n"
        f"#define STANDIN_OUTPUT_SIZE {OUT}\n#define STANDIN_ARENA_SIZE {HIDDEN}\n"
        "int standin_invoke(const int8_t *input, int8_t *output);\n#endif\n")

    def array(ctype: str, name: str, values: np.ndarray) -> str:
        return f"static const {ctype} {name}[{values.size}] = {{{', '.join(map(str, values.ravel()))}}};\n"

    (w1, b1), (w2, b2) = params
    calls = []
    for i, (src, dst, n_in, n_out) in enumerate((("input", "standin_arena", IN, HIDDEN),
                                                 ("standin_arena", "output", HIDDEN, OUT)), 1):
        zp, mult, shift, out_zp, lo = LAYERS[i - 1]
        calls.append(f"    ep_fc({src}, {zp}, standin_w{i}, standin_b{i}, {n_in}, {n_out}, {mult}, {shift}, "
                     f"{out_zp}, {lo}, {dst});\n")
    (lib / f"{NAME}.c").write_text(
        '#include "standin.h"\n#include "ep_fc.h"\n'
        + array("int8_t", "standin_w1", w1) + array("int32_t", "standin_b1", b1)
        + array("int8_t", "standin_w2", w2) + array("int32_t", "standin_b2", b2)
        + "static int8_t standin_arena[STANDIN_ARENA_SIZE];\n"
        + "int standin_invoke(const int8_t *input, int8_t *output) {\n" + "".join(calls) + "    return 0;\n}\n")
    return lib


def reference(x: np.ndarray, params) -> np.ndarray:
    """NumPy version of the stand-in's arithmetic (int64, arithmetic shifts, like the C)."""
    h = x.astype(np.int64)
    for (w, b), (zp, mult, shift, out_zp, lo) in zip(params, LAYERS, strict=True):
        acc = b + (h - zp) @ w.T
        h = np.clip(((acc * mult + (1 << (shift - 1))) >> shift) + out_zp, lo, 127)
    return h.astype(np.int8)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    params = standin_params()
    return write_standin(tmp_path_factory.mktemp("lib") / NAME, params), params


@pytest.fixture(scope="module")
def firmwares(standin, tmp_path_factory):
    """board -> Firmware, built once per board."""
    if MISSING:
        pytest.skip("; ".join(MISSING))
    lib, _ = standin
    built = {}

    def get(board_name: str):
        if board_name not in built:
            built[board_name] = build_firmware(lib, NAME, board_name, tmp_path_factory.mktemp(board_name))
        return built[board_name]

    return get


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(1).integers(-128, 128, (5, IN), dtype=np.int8)


def test_board_table_is_complete():
    for name, spec in BOARDS.items():
        core = CORES[spec.core]
        assert spec.flash_bytes > 0 and spec.ram_bytes > 0 and spec.clock_hz > 0, name
        assert core.flash.length % 4096 == 0 and core.ram.length % 4096 == 0, core.name
    for core in CORES.values():
        assert (core.unicorn_model is None) == (core.cycles is None), core.name
    assert {core_of(b).qemu_machine for b in QEMU_BOARDS} == set(QEMU_BOARDS)
    assert [CORES[c].dsp for c in ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")] \
        == [False, False, True, True, True, True]
    assert board("nrf52840").clock_hz == 64_000_000 and board("rp2040").core == "cortex-m0plus"
    with pytest.raises(InputError, match="known: .*nrf52840"):
        board("esp32")


@pytest.mark.e2e
@needs_toolchain
@pytest.mark.parametrize("board_name", QEMU_BOARDS)
def test_every_core_runs_the_library_in_qemu(firmwares, standin, samples, board_name):
    fw = firmwares(board_name)
    assert (fw.input_size, fw.output_size, fw.qemu_machine) == (IN, OUT, board_name)
    np.testing.assert_array_equal(run_qemu(fw, samples), reference(samples, standin[1]))


@pytest.mark.e2e
@needs_toolchain
@needs_unicorn
@pytest.mark.parametrize("board_name", UNICORN_BOARDS)
def test_instruction_counts_are_deterministic_and_match_qemu(firmwares, samples, board_name):
    from edgeport.mcu.toolchain.icount import count_instructions

    fw = firmwares(board_name)
    first = count_instructions(fw.elf, NAME, board_name, samples[0].tobytes())
    again = count_instructions(fw.elf, NAME, board_name, samples[0].tobytes())
    for key in ("instructions", "cycles_estimate", "mix", "events"):
        assert first[key] == again[key], key
    np.testing.assert_array_equal(first["outputs"], run_qemu(fw, samples[:1])[0])
    assert first["instructions"] == sum(first["mix"].values()) > IN * HIDDEN
    assert first["cycles_estimate"] > 0 and first["method"].startswith("unicorn instruction count")
    assert first["cpu_model"] == core_of(board_name).unicorn_model
    # The SMLAD kernel is compiled only for cores with the DSP extension.
    assert ("dsp_mac" in first["mix"]) == core_of(board_name).dsp


@pytest.mark.e2e
@needs_toolchain
@needs_unicorn
def test_dsp_core_runs_fewer_cycles_than_m0(firmwares, samples):
    from edgeport.mcu.toolchain.icount import count_instructions

    m0 = count_instructions(firmwares("microbit").elf, NAME, "microbit", samples[0].tobytes())
    m4 = count_instructions(firmwares("mps2-an386").elf, NAME, "mps2-an386", samples[0].tobytes())
    assert m4["mix"]["dsp_mac"] == (IN * HIDDEN + HIDDEN * OUT) // 2  # one SMLAD per pair of MACs
    assert m0["mix"]["mul"] >= IN * HIDDEN + HIDDEN * OUT
    assert m4["cycles_estimate"] < m0["cycles_estimate"]


@pytest.mark.e2e
@needs_toolchain
@needs_unicorn
def test_cortex_m55_is_not_measured(firmwares, samples):
    from edgeport.mcu.toolchain.icount import count_instructions

    with pytest.raises(RuntimeGap, match="no Cortex-M55 model"):
        count_instructions(firmwares("mps3-an547").elf, NAME, "mps3-an547", samples[0].tobytes())


# (assembly, class, registers moved, transfers control)
DECODE_CASES = [
    ("adds r0, r1, r2", "alu", 0, False), ("add.w r0, r1, r2, lsl #2", "alu", 0, False),
    ("movw r0, #1000", "alu", 0, False), ("ssat r0, #8, r1", "alu", 0, False), ("clz r0, r1", "alu", 0, False),
    ("muls r0, r1, r0", "mul", 0, False), ("mul r0, r1, r2", "mul", 0, False),
    ("mla r0, r1, r2, r3", "mla", 0, False), ("mls r0, r1, r2, r3", "mla", 0, False),
    ("smull r0, r1, r2, r3", "mul_long", 0, False), ("umlal r0, r1, r2, r3", "mla_long", 0, False),
    ("smlad r0, r1, r2, r3", "dsp_mac", 0, False), ("smuad r0, r1, r2", "dsp_mac", 0, False),
    ("smlabb r0, r1, r2, r3", "dsp_mac", 0, False), ("smmul r0, r1, r2", "dsp_mac", 0, False),
    ("smlald r0, r1, r2, r3", "dsp_mac", 0, False),
    ("sadd16 r0, r1, r2", "simd", 0, False), ("sxtb16 r0, r1", "simd", 0, False),
    ("sxtab16 r0, r1, r2", "simd", 0, False), ("sel r0, r1, r2", "simd", 0, False),
    ("qadd r0, r1, r2", "simd", 0, False), ("sxtb.w r0, r1", "alu", 0, False),
    ("sdiv r0, r1, r2", "div", 0, False), ("udiv r0, r1, r2", "div", 0, False),
    ("ldr r0, [r1]", "load", 0, False), ("ldrb r0, [r1, r2]", "load", 0, False),
    ("ldr.w r0, [r1, #2048]", "load", 0, False), ("ldrsb.w r3, [r2, #1]!", "load", 0, False),
    ("ldr r0, [pc, #4]", "load", 0, False), ("ldrex r0, [r1]", "load", 0, False),
    ("ldr pc, [sp], #4", "load", 0, True),
    ("str r0, [r1]", "store", 0, False), ("strb.w r0, [r1, #1]!", "store", 0, False),
    ("strh r0, [r1, r2]", "store", 0, False),
    ("pop {r4, r5}", "load_multiple", 2, False), ("pop {r4, pc}", "load_multiple", 2, True),
    ("ldmia r0!, {r1, r2, r3}", "load_multiple", 3, False), ("ldrd r0, r1, [r2]", "load_multiple", 2, False),
    ("push {r4, lr}", "store_multiple", 2, False), ("push.w {r4-r11, lr}", "store_multiple", 9, False),
    ("strd r0, r1, [r2]", "store_multiple", 2, False),
    ("b.n .", "branch", 0, True), ("beq.n .", "branch", 0, True), ("b.w .", "branch", 0, True),
    ("bne.w .", "branch", 0, True), ("bx lr", "branch", 0, True), ("cbz r0, 1f", "branch", 0, True),
    ("tbb [r0, r1]", "branch", 0, True), ("mov pc, lr", "branch", 0, True),
    ("bl .", "call", 0, True),
    ("vadd.f32 s0, s1, s2", "fp", 0, False), ("vldr s0, [r0]", "fp", 0, False), ("vmov s0, r0", "fp", 0, False),
    ("svc 0", "other", 0, False), ("bkpt 0", "other", 0, False),
]


@needs_toolchain
def test_thumb_decoder_classifies_instructions(tmp_path):
    from edgeport.mcu.toolchain.icount import block_stats, decode_thumb

    source = "".join(f"{asm}\n" for asm, *_ in DECODE_CASES) + "1: nop\n"
    (tmp_path / "t.s").write_text(".syntax unified\n.thumb\n" + source)
    subprocess.run(["arm-none-eabi-as", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-o", tmp_path / "t.o",
                    tmp_path / "t.s"], check=True)
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text", tmp_path / "t.o", tmp_path / "t.bin"],
                   check=True)
    code, offset = (tmp_path / "t.bin").read_bytes(), 0
    for asm, cls, regs, transfers in DECODE_CASES:
        ins = decode_thumb(code, offset)
        assert (ins.cls, ins.registers, ins.transfers) == (cls, regs, transfers), asm
        offset += ins.size
    assert {cls for _, cls, *_ in DECODE_CASES} <= set(INSTRUCTION_CLASSES)
    # ldr; ldr (pipelined); str (pipelined); adds; bx: ends with a transfer
    stats = block_stats(bytes.fromhex("0868" "0868" "0860" "8818" "7047"))
    assert (stats.instructions, stats.pipelined, stats.ends_with_transfer) == (5, 2, True)


def test_cycle_estimate_follows_the_table():
    from edgeport.mcu.toolchain.icount import estimate_cycles

    mix = dict.fromkeys(INSTRUCTION_CLASSES, 0) | {"alu": 10, "load": 4, "dsp_mac": 3, "branch": 2}
    events = {"registers_moved": 5, "taken_branches": 1, "pipelined_loads_stores": 2}
    assert estimate_cycles(mix, events, M4_CYCLES) == 10 + 4 * 2 + 3 + 2 + 5 + 2 - 2


@pytest.mark.e2e
@needs_toolchain
def test_elf_breakdown_adds_up(firmwares, standin):
    fw = firmwares("mps2-an386")
    sizes = elf_breakdown(fw.elf, NAME)
    assert sum(sizes["flash"].values()) == sizes["flash_bytes"]
    assert sum(sizes["ram"].values()) == sizes["ram_bytes"]
    assert min(sizes["flash"].values()) >= 0 and min(sizes["ram"].values()) >= 0
    (w1, b1), (w2, b2) = standin[1]
    assert sizes["flash"]["weights"] == w1.size + w2.size + 4 * (b1.size + b2.size)
    assert sizes["ram"]["arena"] == HIDDEN and sizes["arena_symbol"] == "standin_arena"
    assert sizes["flash"]["code"] > 0
    core = core_of("mps2-an386")
    assert (sizes["ram"]["stack"], sizes["ram"]["heap"]) == (core.stack_bytes, core.heap_bytes)
    # Totals agree with binutils' own section list.
    listed = subprocess.run(["arm-none-eabi-size", "-A", str(fw.elf)], capture_output=True, text=True, check=True)
    section = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+$", listed.stdout, re.MULTILINE)}
    assert sizes["flash_bytes"] == sum(section[s] for s in (".text", ".rodata", ".init_array", ".data"))
    assert sizes["ram_bytes"] == sum(section[s] for s in (".data", ".bss", ".heap", ".stack"))


@pytest.mark.e2e
@needs_toolchain
def test_example_makefile_builds_and_runs_in_qemu(tmp_path, standin):
    lib = shutil.copytree(standin[0], tmp_path / NAME)
    written = write_integration_files(lib, NAME, "mps2-an386")
    assert {p.name for p in written} == {"CMakeLists.txt", "library.json", "main.c", "Makefile", "startup.c", "link.ld"}
    run = subprocess.run(["make", "-s", "run"], check=False, cwd=lib / "example", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    printed = re.search(r"output:([-\d ]+)", run.stdout).group(1).split()
    pattern = ((np.arange(IN) * 37) % 256 - 128).astype(np.int8)
    np.testing.assert_array_equal(np.array(printed, dtype=np.int8), reference(pattern[None], standin[1])[0])
    # The library's own build does not pick up the example's sources.
    fw = build_firmware(lib, NAME, "mps2-an386", tmp_path / "build")
    assert fw.output_size == OUT
    if shutil.which("cmake"):
        cross = ["-DCMAKE_SYSTEM_NAME=Generic", "-DCMAKE_C_COMPILER=arm-none-eabi-gcc",
                 "-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY", "-DCMAKE_C_FLAGS=-mcpu=cortex-m4 -mthumb"]
        subprocess.run(["cmake", "-S", lib, "-B", tmp_path / "cmake", *cross], check=True, capture_output=True)
        subprocess.run(["cmake", "--build", tmp_path / "cmake"], check=True, capture_output=True)
        assert (tmp_path / "cmake" / f"lib{NAME}.a").is_file()


def _tiny_lib(root: Path, body: str) -> Path:
    lib = root / "tiny"
    lib.mkdir()
    (lib / "tiny.h").write_text("#include <stdint.h>\n#define TINY_INPUT_SIZE 4\n#define TINY_OUTPUT_SIZE 4\n"
                                "#define TINY_ARENA_SIZE 0\nint tiny_invoke(const int8_t *input, int8_t *output);\n")
    (lib / "tiny.c").write_text('#include "tiny.h"\nint tiny_invoke(const int8_t *input, int8_t *output) {\n'
                                + body + "\n}\n")
    return lib


@pytest.mark.e2e
@needs_toolchain
@pytest.mark.parametrize("body, timeout, message", [
    ("(void)input; (void)output; return 1;", 30, "tiny_invoke returned non-zero"),
    ("(void)input; *(volatile int8_t *)0x70000000u = output[0]; return 0;", 30, "crashed"),
    ("(void)input; (void)output; for (;;) {}", 2, "did not finish in 2 s"),
])
def test_firmware_failures_are_reported(tmp_path, body, timeout, message):
    fw = build_firmware(_tiny_lib(tmp_path, body), "tiny", "mps2-an386", tmp_path / "build")
    with pytest.raises(FirmwareRunError, match=message):
        run_qemu(fw, np.zeros((2, 4), np.int8), timeout=timeout)


@pytest.mark.e2e
@needs_toolchain
def test_bad_library_and_inputs_are_clear_errors(tmp_path, firmwares):
    with pytest.raises(FirmwareBuildError, match="unused"):  # -Werror on the library sources
        build_firmware(_tiny_lib(tmp_path, "int unused; (void)input; (void)output; return 0;"), "tiny",
                       "mps2-an386", tmp_path / "build")
    with pytest.raises(InputError, match="no missing.h"):
        build_firmware(tmp_path, "missing", "mps2-an386", tmp_path / "build2")
    with pytest.raises(InputError, match=r"shape \(N, 64\)"):
        run_qemu(firmwares("mps2-an386"), np.zeros((2, 3), np.int8))


def test_missing_toolchain_names_the_debian_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    hints = toolchain_missing()
    assert any("apt-get install gcc-arm-none-eabi" in h for h in hints)
    assert any("apt-get install qemu-system-arm" in h for h in hints)
    with pytest.raises(MissingToolchainError, match="gcc-arm-none-eabi"):
        build_firmware(tmp_path, "x", "mps2-an386", tmp_path / "out")
    # A cross compiler without newlib: gcc cannot find rdimon.specs.
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-ar"):
        (tmp_path / tool).write_text("#!/bin/sh\necho rdimon.specs\n")
        os.chmod(tmp_path / tool, 0o755)
    assert toolchain_missing(need_qemu=False) == [
        "newlib (rdimon.specs) not found: apt-get install libnewlib-arm-none-eabi"]
