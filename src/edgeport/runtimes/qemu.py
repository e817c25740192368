"""QEMU Cortex-M boards: run a generated C library as firmware, with semihosting I/O.

A session builds the library into a firmware image for the target's core (arm-none-eabi-gcc),
then each `run` boots it in QEMU with the inputs and reads the outputs back. Latency is not
timed (QEMU has no cycle timing): `estimate_latency` counts the instructions of one inference
exactly with unicorn and applies the core's cycle table, at the board's clock, and says so.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgeport.tensors import TensorSpec


class QemuSession:
    timing = "estimate"  # QEMU has no cycle timing: `estimate_latency` counts instructions

    def __init__(self, path: str, threads: int = 1):
        from edgeport.mcu.toolchain.firmware import build_firmware
        from edgeport.mcu.toolchain.manifest import read_manifest

        self.folder = Path(path)
        manifest = read_manifest(self.folder)
        self.name, self.board, self.float_io = manifest["name"], manifest["board"], manifest["float_io"]
        self.info = manifest["library"]
        self._build = Path(tempfile.mkdtemp(prefix="edgeport-firmware-"))
        atexit.register(shutil.rmtree, self._build, True)
        self.firmware = build_firmware(self.folder, self.name, self.board, self._build)
        dtype = "float32" if self.float_io else "int8"
        self.inputs = [TensorSpec(manifest["input_names"][0], (None, *self.info["input_shape"][1:]), dtype)]
        self.outputs = [TensorSpec(manifest["output_names"][0], (None, *self.info["output_shape"][1:]), dtype)]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """int8 model input for `x` (quantized with the model's input parameters when I/O is float)."""
        if not self.float_io:
            return np.asarray(x).astype(np.int8)
        scale, zero_point = self.info["input_quantization"]
        return np.clip(np.rint(np.asarray(x, np.float32) / np.float32(scale)) + zero_point, -128, 127).astype(np.int8)

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        """Raw int8 outputs [N, OUTPUT_SIZE] of the firmware for int8 inputs [N, ...]."""
        from edgeport.mcu.toolchain.firmware import run_qemu

        return run_qemu(self.firmware, np.asarray(x, np.int8).reshape(len(x), -1))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = self.quantize_input(next(iter(feeds.values())))
        out = self.run_int8(x).reshape(len(x), *self.info["output_shape"][1:])
        if self.float_io:
            scale, zero_point = self.info["output_quantization"]
            out = (out.astype(np.float32) - zero_point) * np.float32(scale)
        return [out]

    def estimate_latency(self, feed: dict[str, np.ndarray]) -> dict:
        """Instructions of one inference (exact, unicorn) -> estimated cycles -> ms at the board clock."""
        from edgeport.mcu.toolchain.icount import count_instructions

        x = self.quantize_input(next(iter(feed.values()))[:1])
        counted = count_instructions(self.firmware.elf, self.name, self.board, x.tobytes())
        values = {k: v for k, v in counted.items() if k not in ("outputs", "latency_ms_estimate")}
        values["estimated_ms"] = round(counted["latency_ms_estimate"], 4)
        if self.info.get("macs"):
            values["macs"] = self.info["macs"]
            values["cycles_per_mac"] = round(counted["cycles_estimate"] / self.info["macs"], 3)
        return values


class QemuRuntime:
    name = "qemu"
    latency_unavailable = None  # estimated from instruction counts (see QemuSession.estimate_latency)

    def availability(self) -> str | None:
        from edgeport.mcu.toolchain.firmware import toolchain_missing

        missing = toolchain_missing()
        if missing:
            return "; ".join(missing)
        if importlib.util.find_spec("ai_edge_litert") is None:
            return "Python package 'ai-edge-litert' is not installed (pip install 'edgeport[mcu]')"
        return None

    def load(self, path: str, threads: int) -> QemuSession:
        return QemuSession(path, threads)
