"""Cortex-M checks: the firmware's flash and RAM, and bit-exactness with LiteRT's reference kernels."""

from __future__ import annotations

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec
from edgeport.data import random_dataset
from edgeport.units import size

RANDOM_INPUTS = 20
RANDOM_SEED = 1  # not the seed of the pipeline's own random data for .tflite sources (0)


def _breakdown(ctx: CheckContext) -> dict:
    from edgeport.mcu.toolchain.elfsize import elf_breakdown

    if ctx.elf_sizes is None:
        ctx.elf_sizes = elf_breakdown(ctx.session.firmware.elf, ctx.session.name)
    return ctx.elf_sizes


def library_flash(ctx: CheckContext) -> int:
    flash = _breakdown(ctx)["flash"]
    return flash["weights"] + flash["code"] + flash["library_const"]


def check_firmware(ctx: CheckContext) -> CheckResult:
    """Flash and RAM of the library in the firmware image built for the board, from the ELF, with
    a breakdown, against the board's limits."""
    session = ctx.session
    sizes = _breakdown(ctx)
    ram = sizes["ram"]
    values = {
        # what the model costs a firmware: the library's weights, code and constants; its arena and data
        "library_flash_bytes": library_flash(ctx),
        "library_ram_bytes": ram["arena"] + ram["library_ram"],
        **sizes, "board": session.board,
        "image": "harness firmware built with arm-none-eabi-gcc (totals include its stack, heap and newlib)"}
    target = ctx.target
    if target.flash_bytes:
        values["board_flash_bytes"] = target.flash_bytes
        values["fits_flash"] = sizes["flash_bytes"] <= target.flash_bytes
    if target.ram_bytes:
        values["board_ram_bytes"] = target.ram_bytes
        values["fits_ram"] = sizes["ram_bytes"] <= target.ram_bytes
    return CheckResult("firmware", MEASURED, values)


def firmware_lines(fw: dict) -> list[str]:
    f, r = fw["flash"], fw["ram"]
    board = (f" of the board's {size(fw['board_flash_bytes'])} / {size(fw['board_ram_bytes'])}"
             if "board_flash_bytes" in fw else "")
    return [f"library flash {size(fw['library_flash_bytes'])} (weights {size(f['weights'])}, code "
            f"{size(f['code'])}), RAM {size(fw['library_ram_bytes'])} (arena {size(r['arena'])}); "
            f"firmware image {size(fw['flash_bytes'])} flash, {size(fw['ram_bytes'])} RAM{board}"]


FIRMWARE = CheckSpec("firmware", check_firmware, formats=("c",), lines=firmware_lines)


def check_bit_exact(ctx: CheckContext) -> CheckResult:
    """The firmware in QEMU against LiteRT's reference kernels (BUILTIN_REF) on the same int8
    model: random int8 inputs plus the check's data (quantized), output bytes compared."""
    from edgeport.runtimes.litert import LiteRTSession

    session = ctx.session
    reference = LiteRTSession(str(ctx.artifact.path / f"{session.name}.tflite"), 1, reference_kernels=True)
    specs = reference.inputs
    random = random_dataset(specs, RANDOM_INPUTS, seed=RANDOM_SEED).feeds
    batches = [[random[spec.name] for spec in specs]]
    sources = [f"{RANDOM_INPUTS} random int8 inputs (seed {RANDOM_SEED})"]
    if ctx.refs.data is not None:
        values = list(ctx.refs.data.feeds.values())
        batches.append([session.quantize_input(v, k).reshape(len(v), *spec.shape[1:])
                        for k, (v, spec) in enumerate(zip(values, specs))])
        sources.append(f"{len(values[0])} samples of {ctx.refs.data.source}")
    per_input = [np.concatenate([batch[k] for batch in batches]).astype(np.int8) for k in range(len(specs))]
    count = len(per_input[0])
    # the firmware takes each sample's inputs back to back and writes its outputs likewise
    got = session.run_int8(np.concatenate([x.reshape(count, -1) for x in per_input], axis=1))
    want = np.stack([np.concatenate([out.reshape(-1) for out in reference.run_raw(
        {spec.name: x[i:i + 1] for spec, x in zip(specs, per_input)})]) for i in range(count)])
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    same = int(np.sum(np.all(diff == 0, axis=1)))
    return CheckResult("bit_exact", MEASURED, {
        "samples": count, "identical": same, "bit_exact": same == count,
        "max_diff_steps": int(diff.max(initial=0)), "inputs": sources,
        "reference": "LiteRT reference kernels (BUILTIN_REF) on the same .tflite"})


def bit_exact_lines(exact: dict) -> list[str]:
    return [f"QEMU vs LiteRT reference kernels: {exact['identical']}/{exact['samples']} outputs "
            f"bit-exact (max {exact['max_diff_steps']} int8 steps)"]


BIT_EXACT = CheckSpec("bit_exact", check_bit_exact, formats=("c",), lines=bit_exact_lines)
