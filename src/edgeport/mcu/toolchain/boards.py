"""Cortex-M cores and boards: one table each, read by the firmware builder, QEMU runner, size
breakdown and instruction counter.

`CORES` holds what a core needs on this machine: gcc flags, the QEMU machine that emulates it and
that machine's memory map (as QEMU 7.2 models it, checked with `info mtree` and by booting a
semihosting image at these addresses), the unicorn CPU model, and a cycle model. `BOARDS` maps real
boards, and the QEMU machines themselves, to a core with the board's flash, RAM and clock.

Float ABI: hard float with the core's FPU (M4F, M7, M33, M55) because the boards listed ship with
one and that is what firmware projects use; the startup code enables the FPU (CPACR). The M7
gets the single-precision FPv5 of the STM32F746 (double arithmetic is then done in software, as
on the M4); unicorn's M7 model also lacks double-precision instructions such as VMOV.F64. M0/M0+/M3
have no FPU and use the soft-float ABI.

Cycle models are estimates from the Technical Reference Manuals' instruction timing tables
(zero-wait-state memory), applied to an exact instruction mix counted by unicorn:
cycles = scale x (sum over classes of count x cost + registers moved by LDM/STM/PUSH/POP
x per_register + taken branches x branch_penalty - pipelined loads/stores x pipelined_saving).

- Cortex-M0 (DDI 0432C, table 3-1): ALU 1, MULS 1 (fast-multiplier configuration; 32 with the
  small one), LDR/STR 2, LDM/STM/PUSH/POP 1+N, B taken 3 / not taken 1, BL 4, BX/BLX 3;
  POP {pc} is modelled as 1+N+P = 3+N (the TRM says 4+N). No divide instruction (libgcc's
  routines are counted instruction by instruction).
- Cortex-M0+ (DDI 0484C, table 3-1): as M0 but taken branches 2 (2-stage pipeline), BL 3.
- Cortex-M3 (DDI 0337, table 3.1): ALU 1, MUL 1, MLA/MLS 2, SMULL/UMULL 3-5 (4), SMLAL/UMLAL
  4-7 (5), SDIV/UDIV 2-12 (7), LDR/STR 2, LDM/STM 1+N, branch 1+P with P 1-3 (2). A load or store
  right after a load pipelines its address phase and takes one cycle less.
- Cortex-M4 (100166, table 3-1): as M3, plus single-cycle MLA, long multiplies and DSP
  (SMLAD, SMLABB, SMMUL, ..., parallel add/sub, SXTB16). FPU data processing 1 (VDIV/VSQRT 14
  are rare in int8 kernels and not separated).
- Cortex-M7: Arm publishes no per-instruction table; the dual-issue 6-stage pipeline with branch
  prediction retires about 1.5x the M4 rate on integer DSP code, so: the M4 table x 0.65.
- Cortex-M33: its TRM has no per-instruction table; same 3-stage pipeline class as the M4 with
  the DSP extension, so the M4 table (SDIV 2-11).
- Cortex-M55: unicorn has no M55 (or MVE) model, so it is not measured (`unicorn_model` None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edgeport.errors import InputError

KIB = 1024
MIB = 1024 * KIB
MHZ = 1_000_000

# Nominal clocks of the FPGA images (QEMU's SYSCLK values: mps2 AN385/AN386/AN500 25 MHz,
# mps2-tz AN505 20 MHz, mps3 AN547 32 MHz). QEMU has no timing: these only scale estimates.
MPS2_CLOCK_HZ = 25 * MHZ

# Instruction classes the counter reports (icount decodes Thumb/Thumb-2 into these).
INSTRUCTION_CLASSES = ("alu", "mul", "mla", "mul_long", "mla_long", "dsp_mac", "simd", "div",
                       "load", "store", "load_multiple", "store_multiple", "branch", "call", "fp", "other")


@dataclass(frozen=True)
class MemoryRegion:
    """A contiguous memory range: `origin` and `length` in bytes."""

    origin: int
    length: int

    @property
    def end(self) -> int:
        return self.origin + self.length


@dataclass(frozen=True)
class CycleModel:
    """Cycles per instruction class for one core (see the module docstring for sources).

    Attributes:
        costs: Base cycles per instruction of each class in `INSTRUCTION_CLASSES`.
        per_register: Extra cycles per register moved by LDM/STM/PUSH/POP/LDRD/STRD (the N of 1+N).
        branch_penalty: Pipeline refill P added to every taken branch, call or write to PC.
        pipelined_saving: Cycles saved by a load/store that directly follows a load.
        scale: Factor applied to the total (dual issue on the M7).
        source: Where the numbers come from, for reports.
    """

    costs: Mapping[str, float]
    per_register: float
    branch_penalty: float
    pipelined_saving: float
    source: str
    scale: float = 1.0

    def __post_init__(self):
        missing = set(INSTRUCTION_CLASSES) - set(self.costs)
        if missing:
            raise ValueError(f"cycle model lacks costs for {sorted(missing)}")


@dataclass(frozen=True)
class Core:
    """A Cortex-M core as edgeport builds for, emulates and measures it.

    Attributes:
        name: Core name (`cortex-m4`).
        gcc_flags: arm-none-eabi-gcc code generation flags (CPU, Thumb, float ABI/FPU).
        dsp: Whether the core has the DSP extension (SMLAD and friends).
        qemu_machine: The `qemu-system-arm -M` machine that runs this core's firmware.
        flash / ram: Where the firmware's code+constants and its data+stack go on that machine.
        stack_bytes / heap_bytes: Main stack and minimum heap the firmware linker script reserves.
        unicorn_model: `unicorn.arm_const` CPU model name, or None when unicorn cannot emulate it.
        unicorn_note: Why there is no unicorn model (or what stands in for it).
        cycles: Cycle model for instruction-count estimates, or None when not measured.
    """

    name: str
    gcc_flags: tuple[str, ...]
    dsp: bool
    qemu_machine: str
    flash: MemoryRegion
    ram: MemoryRegion
    stack_bytes: int
    heap_bytes: int
    unicorn_model: str | None
    cycles: CycleModel | None
    unicorn_note: str = ""


@dataclass(frozen=True)
class Board:
    """A board: its core and its own limits (which may be smaller or larger than QEMU's machine)."""

    name: str
    core: str
    flash_bytes: int
    ram_bytes: int
    clock_hz: int
    description: str
    notes: tuple[str, ...] = field(default_factory=tuple)


def _costs(**overrides: float) -> Mapping[str, float]:
    """Every class at 1 cycle except the overrides."""
    costs = dict.fromkeys(INSTRUCTION_CLASSES, 1.0)
    costs.update(overrides)
    return MappingProxyType(costs)


M0_CYCLES = CycleModel(
    costs=_costs(load=2, store=2, call=2),
    per_register=1, branch_penalty=2, pipelined_saving=0,
    source="Cortex-M0 TRM (DDI 0432C) table 3-1, fast multiplier")
M0PLUS_CYCLES = CycleModel(
    costs=_costs(load=2, store=2, call=2),
    per_register=1, branch_penalty=1, pipelined_saving=0,
    source="Cortex-M0+ TRM (DDI 0484C) table 3-1, fast multiplier")
M3_CYCLES = CycleModel(
    costs=_costs(mla=2, mul_long=4, mla_long=5, div=7, load=2, store=2),
    per_register=1, branch_penalty=2, pipelined_saving=1,
    source="Cortex-M3 TRM (DDI 0337) table 3.1; P=2, SDIV/UDIV 7 (2-12), SMULL 4 (3-5), SMLAL 5 (4-7)")
M4_CYCLES = CycleModel(
    costs=_costs(div=7, load=2, store=2),
    per_register=1, branch_penalty=2, pipelined_saving=1,
    source="Cortex-M4 TRM (100166) table 3-1; P=2, SDIV/UDIV 7 (2-12)")
M7_CYCLES = CycleModel(
    costs=M4_CYCLES.costs, per_register=1, branch_penalty=2, pipelined_saving=1, scale=0.65,
    source="approximation: Cortex-M4 table x 0.65 for the M7's dual issue (no public per-instruction table)")
M33_CYCLES = CycleModel(
    costs=M4_CYCLES.costs, per_register=1, branch_penalty=2, pipelined_saving=1,
    source="approximation: Cortex-M4 table (the M33 TRM has no per-instruction table; same pipeline depth)")

# QEMU memory maps (QEMU 7.2, `info mtree`): mps2-an385/386/500: 4 MB SSRAM1 at 0 (code), 4 MB
# SSRAM2/3 at 0x20000000. mps2-an505 boots secure with VTOR 0x10000000: SSRAM1 (4 MB) through its
# secure alias 0x10000000, SSRAM2+3 (2+2 MB at 0x28000000) through 0x38000000. mps3-an547 boots
# from its 512 KB ITCM at 0; 512 KB DTCM at 0x20000000. microbit (nRF51822): 256 KB flash at 0,
# 16 KB RAM at 0x20000000.
_MPS2_FLASH = MemoryRegion(0x0000_0000, 4 * MIB)
_MPS2_RAM = MemoryRegion(0x2000_0000, 4 * MIB)
_MICROBIT_FLASH = MemoryRegion(0x0000_0000, 256 * KIB)
_MICROBIT_RAM = MemoryRegion(0x2000_0000, 16 * KIB)
_FPU_M4 = ("-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")

CORES: Mapping[str, Core] = MappingProxyType({core.name: core for core in (
    Core("cortex-m0", ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"), dsp=False,
         qemu_machine="microbit", flash=_MICROBIT_FLASH, ram=_MICROBIT_RAM, stack_bytes=2 * KIB,
         heap_bytes=512, unicorn_model="UC_CPU_ARM_CORTEX_M0", cycles=M0_CYCLES),
    Core("cortex-m0plus", ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"), dsp=False,
         qemu_machine="microbit", flash=_MICROBIT_FLASH, ram=_MICROBIT_RAM, stack_bytes=2 * KIB,
         heap_bytes=512, unicorn_model="UC_CPU_ARM_CORTEX_M0", cycles=M0PLUS_CYCLES,
         unicorn_note="QEMU and unicorn emulate a Cortex-M0 (same ARMv6-M instruction set); "
                      "cycles use the M0+ table"),
    Core("cortex-m3", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"), dsp=False,
         qemu_machine="mps2-an385", flash=_MPS2_FLASH, ram=_MPS2_RAM, stack_bytes=8 * KIB,
         heap_bytes=4 * KIB, unicorn_model="UC_CPU_ARM_CORTEX_M3", cycles=M3_CYCLES),
    Core("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", *_FPU_M4), dsp=True,
         qemu_machine="mps2-an386", flash=_MPS2_FLASH, ram=_MPS2_RAM, stack_bytes=8 * KIB,
         heap_bytes=4 * KIB, unicorn_model="UC_CPU_ARM_CORTEX_M4", cycles=M4_CYCLES),
    Core("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"), dsp=True,
         qemu_machine="mps2-an500", flash=_MPS2_FLASH, ram=_MPS2_RAM, stack_bytes=8 * KIB,
         heap_bytes=4 * KIB, unicorn_model="UC_CPU_ARM_CORTEX_M7", cycles=M7_CYCLES),
    Core("cortex-m33", ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"), dsp=True,
         qemu_machine="mps2-an505", flash=MemoryRegion(0x1000_0000, 4 * MIB),
         ram=MemoryRegion(0x3800_0000, 4 * MIB), stack_bytes=8 * KIB, heap_bytes=4 * KIB,
         unicorn_model="UC_CPU_ARM_CORTEX_M33", cycles=M33_CYCLES),
    Core("cortex-m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"), dsp=True,
         qemu_machine="mps3-an547", flash=MemoryRegion(0x0000_0000, 512 * KIB),
         ram=MemoryRegion(0x2000_0000, 512 * KIB), stack_bytes=8 * KIB, heap_bytes=4 * KIB,
         unicorn_model=None, cycles=None,
         unicorn_note="unicorn 2.1 has no Cortex-M55 model (Armv8.1-M, MVE); instruction counts "
                      "are not measured for it"),
)})

BOARDS: Mapping[str, Board] = MappingProxyType({board.name: board for board in (
    # The QEMU machines themselves (limits = the memory map above, nominal FPGA clock).
    Board("microbit", "cortex-m0", 256 * KIB, 16 * KIB, 16 * MHZ, "BBC micro:bit v1 (nRF51822, QEMU microbit)"),
    Board("mps2-an385", "cortex-m3", 4 * MIB, 4 * MIB, MPS2_CLOCK_HZ, "Arm MPS2 AN385 FPGA image (QEMU)"),
    Board("mps2-an386", "cortex-m4", 4 * MIB, 4 * MIB, MPS2_CLOCK_HZ, "Arm MPS2 AN386 FPGA image (QEMU)"),
    Board("mps2-an500", "cortex-m7", 4 * MIB, 4 * MIB, MPS2_CLOCK_HZ, "Arm MPS2 AN500 FPGA image (QEMU)"),
    Board("mps2-an505", "cortex-m33", 4 * MIB, 4 * MIB, 20 * MHZ, "Arm MPS2 AN505 FPGA image (QEMU)"),
    Board("mps3-an547", "cortex-m55", 512 * KIB, 512 * KIB, 32 * MHZ, "Arm MPS3 AN547 FPGA image (QEMU)",
          notes=("ITCM 512 KB + DTCM 512 KB; the image also has 2 MB SRAM and 4 MB ISRAM not used here",)),
    # Real boards, emulated on their core's QEMU machine.
    Board("nrf52840", "cortex-m4", 1 * MIB, 256 * KIB, 64 * MHZ, "Nordic nRF52840 (Cortex-M4F)"),
    Board("stm32l4r5", "cortex-m4", 2 * MIB, 640 * KIB, 120 * MHZ, "ST STM32L4R5 (Cortex-M4F)"),
    Board("stm32f746", "cortex-m7", 1 * MIB, 320 * KIB, 216 * MHZ, "ST STM32F746 (Cortex-M7)"),
    Board("rp2040", "cortex-m0plus", 2 * MIB, 264 * KIB, 133 * MHZ, "Raspberry Pi RP2040 (Cortex-M0+)",
          notes=("2 MB is external QSPI flash (XIP)",
                 "runs in QEMU's microbit machine, whose 16 KB RAM limits the models that can be run there")),
)})


def board(name: str) -> Board:
    """The board called `name`.

    Raises:
        InputError: Unknown board; the message lists the known ones.
    """
    try:
        return BOARDS[name]
    except KeyError:
        raise InputError(f"unknown board '{name}' (known: {', '.join(sorted(BOARDS))})") from None


def core_of(board_name: str) -> Core:
    """The core of board `board_name` (see `board`)."""
    return CORES[board(board_name).core]
