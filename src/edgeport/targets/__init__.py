"""Device profiles: what each target ships, which runtime checks it, and the device's limits.

One table (`PROFILES`) holds every profile; `TARGETS` is the registry built from it. Whether a
target is usable here (an exporter for its format, its runtime and tools present) is asked of
`edgeport.plugins.missing(target)`: this module sits below the exporters and runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgeport.errors import InputError
from edgeport.registry import Registry


@dataclass(frozen=True)
class Target:
    """A device profile.

    Attributes:
        name: Registry name, used on the command line (`--target onnx`).
        format: Artifact format; selects the exporter.
        runtime: Runtime that runs the checks.
        description: One line for `edgeport targets`.
        flash_bytes / ram_bytes / clock_hz: Device limits, where the device has them.
        python_packages / programs: What the exporter and checks need on this machine.
        latency_threads: Thread counts timed by the latency check (default: the `--threads` setting).
        options: Its options section (`edgeport.targets.options.OPTION_SECTIONS`): the TOML
            section, the `target_options` key and the flag group its exporter reads.
    """

    name: str
    format: str
    runtime: str
    description: str
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    clock_hz: int | None = None
    python_packages: tuple[str, ...] = field(default_factory=tuple)
    programs: tuple[str, ...] = field(default_factory=tuple)
    latency_threads: tuple[int, ...] = ()
    in_all: bool = True  # part of `--target all` (real boards are named; their core's target is in `all`)
    options: str | None = None


KIB = 1024
MIB = 1024 * KIB


def mcu_profiles() -> list[Target]:
    """One target per Cortex-M core (on the QEMU machine that emulates it) and per real board,
    from the board table in `edgeport.mcu.boards`."""
    from edgeport.mcu.toolchain.boards import BOARDS, CORES

    profiles = []
    for board_name, target_name in MCU_TARGET_BOARDS.items():
        spec, core = BOARDS[board_name], CORES[BOARDS[board_name].core]
        if board_name == core.qemu_machine:
            description = f"C library for {core.name} ({spec.description})"
        else:
            description = f"C library for {spec.description}, run on QEMU {core.qemu_machine}"
        profiles.append(Target(target_name, "c", "qemu", description, flash_bytes=spec.flash_bytes,
                               ram_bytes=spec.ram_bytes, clock_hz=spec.clock_hz,
                               in_all=board_name == core.qemu_machine, options="mcu"))
    return profiles


# Cortex-M board (edgeport.mcu.boards.BOARDS) -> target name: a core's name stands for the QEMU
# machine that emulates it; real boards keep their own name.
MCU_TARGET_BOARDS = {
    "microbit": "cortex-m0", "mps2-an385": "cortex-m3", "mps2-an386": "cortex-m4", "mps2-an500": "cortex-m7",
    "mps2-an505": "cortex-m33", "mps3-an547": "cortex-m55",
    "nrf52840": "nrf52840", "stm32l4r5": "stm32l4r5", "stm32f746": "stm32f746", "rp2040": "rp2040",
}


def board_of(target: str) -> str:
    """The board (edgeport.mcu.boards) a Cortex-M target runs as."""
    return {t: b for b, t in MCU_TARGET_BOARDS.items()}[target]

# name, format, runtime, description, limits, needs. Microcontroller boards map to the QEMU
# machine of their core; see the cortex-m exporter for CPU flags.
PROFILES = [
    Target("onnx", "onnx", "onnxruntime", "ONNX model (fp32/fp16/int8 QDQ) for ONNX Runtime"),
    Target("onnx-mobile", "ort", "onnxruntime", "ORT format model for ONNX Runtime Mobile"),
    Target("android", "tflite", "litert", "TFLite model for Android apps (LiteRT)",
           python_packages=("litert_torch", "ai_edge_litert", "torch"), latency_threads=(1, 2), options="android"),
    Target("ios", "mlpackage", "coreml-mil", "Core ML ML Program for iOS apps (checked by the MIL evaluator)",
           python_packages=("coremltools", "torch"), options="ios"),
    Target("browser-tfjs", "tfjs", "chromium", "TF.js graph model, checked in headless Chromium (tfjs cpu + wasm)",
           options="browser"),
    Target("browser-ort", "onnx", "chromium", "ONNX model for onnxruntime-web, checked in headless Chromium (wasm)",
           options="browser"),
    *mcu_profiles(),
]

TARGETS: Registry[Target] = Registry("target")
for _profile in PROFILES:
    TARGETS.add(_profile.name, _profile)

# A group name stands for several targets on the command line (`--target browser`).
GROUPS = {"browser": ("browser-tfjs", "browser-ort")}


def resolve_targets(spec: str | list[str], usable: Callable[[Target], bool] = lambda t: True) -> list[Target]:
    """Targets named by a comma-separated string or list; `all` means every target in `all` for
    which `usable` holds (`edgeport.plugins.resolve_targets` passes "usable here")."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return [t for t in TARGETS if t.in_all and usable(t)]
    expanded = [member for n in names for member in GROUPS.get(n, (n,))]
    unknown = [n for n in expanded if n not in TARGETS]
    if unknown:
        raise InputError(f"unknown target '{unknown[0]}' (known: {', '.join(sorted(TARGETS.names()))}; "
                         f"groups: {', '.join(GROUPS)})")
    return [TARGETS.get(n) for n in dict.fromkeys(expanded)]
