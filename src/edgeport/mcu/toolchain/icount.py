"""Exact instruction counts of one `<name>_invoke` call, by emulation in unicorn, and a cycle
estimate from the instruction mix and the core's cycle table (`boards`).

QEMU runs the firmware for correctness but has no cycle timing. Here the same ELF is loaded into
unicorn (the QEMU CPU core as a library) with the board's memory map; `<name>_invoke` is called
directly with r0 = `ep_input`, r1 = `ep_output` (the harness's buffers) and a return address
that stops the emulation. Every executed translation block is classified once (Thumb/Thumb-2
decoding below) and counted each time it runs, which is exact: a block runs to its end unless
it faults, and a fault is an error here. Taken branches are the blocks whose successor is not
the fall-through address. Counts include instructions of an IT block whose condition fails: the
core still issues them (a per-instruction UC_HOOK_CODE skips them, which is why blocks are hooked;
blocks are also about four times faster here: ~5 vs ~1.3 M instructions/s).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.errors import InputError, MissingDependencyError, RuntimeGap
from edgeport.mcu.toolchain import boards
from edgeport.mcu.toolchain.boards import INSTRUCTION_CLASSES, CycleModel
from edgeport.mcu.toolchain.elfsize import read_elf

METHOD = "unicorn instruction count x per-core cycle table (estimate)"
RETURN_ADDRESS = 0x0E00_0000  # an unmapped-by-any-board page, mapped here as the return target
PAGE = 0x1000
TIMEOUT_S = 300


@dataclass(frozen=True)
class Instruction:
    """One decoded Thumb instruction: class, byte size, registers moved (LDM/STM/PUSH/POP/LDRD/STRD)
    and whether it can transfer control (branch, call, or a write to PC)."""

    cls: str
    size: int
    registers: int = 0
    transfers: bool = False


def _dp_register(hw1: int, hw2: int) -> str:
    """Thumb-2 data processing (register): shifts, extends, parallel add/sub, misc."""
    op1, op2 = (hw1 >> 4) & 0xF, (hw2 >> 4) & 0xF
    if op1 < 8:
        return "simd" if op2 & 0x8 and op1 in (0b0010, 0b0011) else "alu"  # SXTB16/UXTB16 (+A)
    if op2 < 8:
        return "simd"  # parallel add/subtract, signed/unsigned, saturating/halving
    return "simd" if op1 in (0b1000, 0b1010) else "alu"  # QADD/QSUB/SEL vs REV/RBIT/CLZ


def _multiply(hw1: int, hw2: int) -> str:
    """Thumb-2 multiply, multiply-accumulate and absolute difference (32-bit results)."""
    op1, ra = (hw1 >> 4) & 0x7, (hw2 >> 12) & 0xF
    if op1 == 0:
        return "mul" if (hw2 >> 4) & 0x3 == 0 and ra == 0xF else "mla"
    return "dsp_mac"  # SMLA<x><y>, SMLAD, SMLAW, SMLSD, SMMLA, SMMLS, USADA8 and non-accumulating forms


def _multiply_long(hw1: int, hw2: int) -> str:
    """Thumb-2 long multiply, long multiply-accumulate and divide."""
    op1, op2 = (hw1 >> 4) & 0x7, (hw2 >> 4) & 0xF
    if op1 in (0b001, 0b011):
        return "div"
    if op1 in (0b000, 0b010):
        return "mul_long"
    if op1 in (0b100, 0b110) and op2 in (0b0000, 0b0110):
        return "mla_long"  # SMLAL, UMLAL, UMAAL
    return "dsp_mac"  # SMLAL<x><y>, SMLALD, SMLSLD


def _decode32(hw1: int, hw2: int) -> Instruction:
    op1 = (hw1 >> 11) & 0x3
    if op1 == 0b01:
        if hw1 & 0x0400:
            return Instruction("fp", 4)  # coprocessor, floating point (and MVE on Armv8.1-M)
        if hw1 & 0x0640 == 0x0000:  # load/store multiple
            regs = hw2.bit_count()
            load = bool(hw1 & 0x0010)
            return Instruction("load_multiple" if load else "store_multiple", 4, regs, load and bool(hw2 & 0x8000))
        if hw1 & 0x0640 == 0x0040:  # load/store dual or exclusive, table branch
            load = bool(hw1 & 0x0010)
            if hw1 & 0x0120:
                return Instruction("load_multiple" if load else "store_multiple", 4, 2)
            if hw1 & 0xFFF0 == 0xE8D0 and hw2 & 0xFFE0 == 0xF000:
                return Instruction("branch", 4, 0, True)  # TBB/TBH
            return Instruction("load" if load else "store", 4)
        return Instruction("alu", 4)  # data processing (shifted register)
    if op1 == 0b10:
        if not hw2 & 0x8000:
            return Instruction("alu", 4)  # data processing (immediate)
        if hw2 & 0x4000:
            return Instruction("call", 4, 0, True)  # BL
        if hw2 & 0x1000 or (hw1 >> 7) & 0x7 != 0x7:
            return Instruction("branch", 4, 0, True)  # B.W, B<c>.W
        return Instruction("alu", 4)  # MSR, MRS, hints, barriers
    # op1 == 0b11
    if hw1 & 0x0400:
        return Instruction("fp", 4)
    if hw1 & 0x0710 == 0x0000:
        return Instruction("store", 4)
    if hw1 & 0x0610 == 0x0010:
        word = (hw1 >> 5) & 0x3 == 0b10
        return Instruction("load", 4, 0, word and (hw2 >> 12) == 0xF)  # LDR pc, [...] branches
    if hw1 & 0x0780 in (0x0200, 0x0280):
        return Instruction(_dp_register(hw1, hw2), 4)
    if hw1 & 0x0780 == 0x0300:
        return Instruction(_multiply(hw1, hw2), 4)
    if hw1 & 0x0780 == 0x0380:
        return Instruction(_multiply_long(hw1, hw2), 4)
    return Instruction("other", 4)


def _decode16(hw: int) -> Instruction:
    top = hw >> 10
    if top < 0b010000:
        return Instruction("alu", 2)  # shift, add, subtract, move, compare
    if top == 0b010000:
        return Instruction("mul" if hw & 0xFFC0 == 0x4340 else "alu", 2)  # data processing, MULS
    if top == 0b010001:  # special data processing, branch and exchange
        if (hw >> 8) & 0x3 == 0x3:
            return Instruction("branch", 2, 0, True)  # BX, BLX
        writes_pc = (hw >> 8) & 0x3 in (0x0, 0x2) and ((hw >> 4) & 0x8 | hw & 0x7) == 15
        return Instruction("branch" if writes_pc else "alu", 2, 0, writes_pc)
    if hw >> 11 == 0b01001:
        return Instruction("load", 2)  # LDR literal
    if hw >> 12 == 0b0101:
        return Instruction("load" if (hw >> 9) & 0x7 >= 3 else "store", 2)  # register offset
    if hw >> 13 == 0b011 or hw >> 12 in (0b1000, 0b1001):
        return Instruction("load" if hw & 0x0800 else "store", 2)  # immediate offset, SP-relative
    if hw >> 12 == 0b1010:
        return Instruction("alu", 2)  # ADR, ADD SP
    if hw >> 12 == 0b1011:  # miscellaneous
        if hw & 0x0500 == 0x0100:
            return Instruction("branch", 2, 0, True)  # CBZ, CBNZ
        if hw & 0x0E00 == 0x0400:
            return Instruction("store_multiple", 2, (hw & 0x1FF).bit_count())  # PUSH
        if hw & 0x0E00 == 0x0C00:
            return Instruction("load_multiple", 2, (hw & 0x1FF).bit_count(), bool(hw & 0x0100))  # POP
        if hw & 0x0F00 == 0x0E00:
            return Instruction("other", 2)  # BKPT
        return Instruction("alu", 2)  # IT, hints, extend, reverse, CPS, ADD/SUB SP
    if hw >> 11 in (0b11000, 0b11001):
        load = hw >> 11 == 0b11001
        return Instruction("load_multiple" if load else "store_multiple", 2, (hw & 0xFF).bit_count())
    if hw >> 12 == 0b1101:
        cond = (hw >> 8) & 0xF
        return Instruction("other", 2) if cond >= 0xE else Instruction("branch", 2, 0, True)  # UDF/SVC, B<c>
    if hw >> 11 == 0b11100:
        return Instruction("branch", 2, 0, True)  # B
    return Instruction("other", 2)


def decode_thumb(code: bytes, offset: int = 0) -> Instruction:
    """Classify the Thumb/Thumb-2 instruction at `code[offset:]` into `INSTRUCTION_CLASSES`."""
    hw1 = int.from_bytes(code[offset:offset + 2], "little")
    if hw1 >> 11 in (0b11101, 0b11110, 0b11111):
        return _decode32(hw1, int.from_bytes(code[offset + 2:offset + 4], "little"))
    return _decode16(hw1)


@dataclass(frozen=True)
class BlockStats:
    """Counts of one straight-line block, decoded once and added up each time it runs."""

    counts: tuple[tuple[str, int], ...]
    instructions: int
    registers: int
    pipelined: int
    ends_with_transfer: bool


def block_stats(code: bytes) -> BlockStats:
    """Instruction classes of a block of Thumb code, with the M3/M4 load pipelining count: a load
    or store that directly follows a load saves a cycle (the TRMs' pipelining rule)."""
    counts: Counter[str] = Counter()
    registers = pipelined = offset = 0
    previous = last = None
    while offset < len(code):
        ins = decode_thumb(code, offset)
        counts[ins.cls] += 1
        registers += ins.registers
        if previous == "load" and ins.cls in ("load", "store"):
            pipelined += 1
        previous, last = ins.cls, ins
        offset += ins.size
    return BlockStats(tuple(sorted(counts.items())), sum(counts.values()), registers, pipelined,
                      last is not None and (last.transfers or last.cls in ("branch", "call")))


def estimate_cycles(mix: dict[str, int], events: dict[str, int], model: CycleModel) -> int:
    """Cycles = scale x (sum of count x cost + registers x per_register + taken x P - pipelined x saving)."""
    cycles = sum(count * model.costs[cls] for cls, count in mix.items())
    cycles += events["registers_moved"] * model.per_register
    cycles += events["taken_branches"] * model.branch_penalty
    cycles -= events["pipelined_loads_stores"] * model.pipelined_saving
    return round(cycles * model.scale)


def _page_span(start: int, end: int) -> tuple[int, int]:
    lo = start & ~(PAGE - 1)
    return lo, ((end + PAGE - 1) & ~(PAGE - 1)) - lo


def _optional_symbol(image, name: str):
    try:
        return image.symbol(name)
    except KeyError:
        return None


def count_instructions(elf: Path, name: str, board: str, input_bytes: bytes) -> dict:
    """Count the instructions one `<name>_invoke` call executes on `board`'s core (after
    `<name>_init`, when the library has one: start-up work is not part of an inference).

    Args:
        elf: Firmware built by `build_firmware` (it has `ep_input`/`ep_output` and `<name>_invoke`).
        name: Library name.
        board: Board (selects the core: unicorn CPU model, memory map, cycle table).
        input_bytes: One input sample (`<NAME>_INPUT_SIZE` bytes).

    Returns:
        {"instructions", "cycles_estimate", "latency_ms_estimate" (at the board's clock), "mix"
        (instructions per class), "events" (registers moved, taken branches, pipelined loads),
        "cpu_model", "core", "cycle_model" (its source), "method", "outputs" (int8 array read
        from `ep_output`, to compare with QEMU's)}. Same input, same numbers.

    Raises:
        RuntimeGap: unicorn has no model of this core (Cortex-M55).
        MissingDependencyError: unicorn is not installed.
        InputError: The ELF lacks the symbols, or the input has the wrong size.
        RuntimeError: The emulation faulted or did not return.
    """
    core = boards.core_of(board)
    if core.unicorn_model is None or core.cycles is None:
        raise RuntimeGap(core.unicorn_note)
    try:
        import unicorn
        from unicorn import arm_const
    except ImportError:
        raise MissingDependencyError("unicorn", "Cortex-M instruction counting", extra="mcu") from None

    image = read_elf(elf)
    try:
        # several inputs or outputs: the harness's buffers hold them back to back (`_invoke_packed`)
        packed = any(s.name == f"{name}_invoke_packed" for s in image.symbols)
        entry = f"{name}_invoke_packed" if packed else f"{name}_invoke"
        invoke, ep_input, ep_output, stack_top = (
            image.symbol(s) for s in (entry, "ep_input", "ep_output", "__stack_top__"))
    except KeyError as missing:
        raise InputError(f"{elf} has no symbol {missing} (not built by edgeport's build_firmware?)") from None
    if len(input_bytes) != ep_input.size:
        raise InputError(f"input has {len(input_bytes)} bytes; {name} takes {ep_input.size}")

    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(getattr(arm_const, core.unicorn_model))
    for region in (core.flash, core.ram):
        uc.mem_map(*_page_span(region.origin, region.end))
    uc.mem_map(RETURN_ADDRESS, PAGE)
    for segment in image.segments:  # at their run addresses: .data initialised, .bss zero
        uc.mem_write(segment.vaddr, segment.data)
    uc.mem_write(ep_input.value, bytes(input_bytes))
    # No CPACR write: unicorn's M-profile CPUs execute FPU instructions from reset (checked).
    init_symbol = _optional_symbol(image, f"{name}_init")
    if init_symbol is not None:  # weights decoded once at start-up: not part of an inference
        uc.reg_write(arm_const.UC_ARM_REG_SP, stack_top.value)
        uc.reg_write(arm_const.UC_ARM_REG_LR, RETURN_ADDRESS | 1)
        uc.emu_start(init_symbol.value | 1, RETURN_ADDRESS, timeout=TIMEOUT_S * 1_000_000)
    uc.reg_write(arm_const.UC_ARM_REG_SP, stack_top.value)
    uc.reg_write(arm_const.UC_ARM_REG_R0, ep_input.value)
    uc.reg_write(arm_const.UC_ARM_REG_R1, ep_output.value)
    uc.reg_write(arm_const.UC_ARM_REG_LR, RETURN_ADDRESS | 1)

    cache: dict[tuple[int, int], BlockStats] = {}
    runs: Counter[tuple[int, int]] = Counter()
    state = {"previous": None, "taken": 0}

    def on_block(uc_, address, size, _):
        if address == RETURN_ADDRESS or size == 0:
            return
        key = (address, size)
        if key not in cache:
            cache[key] = block_stats(bytes(uc_.mem_read(address, size)))
        runs[key] += 1
        previous = state["previous"]
        if previous is not None and cache[previous].ends_with_transfer and previous[0] + previous[1] != address:
            state["taken"] += 1
        state["previous"] = key

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    try:
        uc.emu_start(invoke.value | 1, RETURN_ADDRESS, timeout=TIMEOUT_S * 1_000_000)
    except unicorn.UcError as err:
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        raise RuntimeError(f"unicorn ({core.name}) stopped with '{err}' at pc=0x{pc:08x} in {name}_invoke") from None
    pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
    if pc & ~1 != RETURN_ADDRESS:
        raise RuntimeError(f"{name}_invoke did not return within {TIMEOUT_S} s of emulation (pc=0x{pc:08x})")
    # The last block returns to RETURN_ADDRESS: a taken transfer too.
    if state["previous"] is not None and cache[state["previous"]].ends_with_transfer:
        state["taken"] += 1
    if uc.reg_read(arm_const.UC_ARM_REG_R0) != 0:
        raise RuntimeError(f"{name}_invoke returned {uc.reg_read(arm_const.UC_ARM_REG_R0)} (expected 0)")

    mix = dict.fromkeys(INSTRUCTION_CLASSES, 0)
    events = {"registers_moved": 0, "taken_branches": state["taken"], "pipelined_loads_stores": 0}
    for key, times in runs.items():
        stats = cache[key]
        for cls, count in stats.counts:
            mix[cls] += count * times
        events["registers_moved"] += stats.registers * times
        events["pipelined_loads_stores"] += stats.pipelined * times
    cycles = estimate_cycles(mix, events, core.cycles)
    clock_hz = boards.board(board).clock_hz
    return {
        "instructions": sum(mix.values()),
        "cycles_estimate": cycles,
        "latency_ms_estimate": round(1000 * cycles / clock_hz, 4),
        "clock_hz": clock_hz,
        "mix": {cls: n for cls, n in mix.items() if n},
        "events": events,
        "cpu_model": core.unicorn_model,
        "core": core.name,
        "cycle_model": core.cycles.source,
        "method": METHOD,
        "outputs": np.frombuffer(bytes(uc.mem_read(ep_output.value, ep_output.size)), dtype=np.int8).copy(),
    }
