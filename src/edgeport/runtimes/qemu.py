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
        self.inputs = _specs(manifest["input_names"], self.info["inputs"], dtype)
        self.outputs = _specs(manifest["output_names"], self.info["outputs"], dtype)

    def quantize_input(self, x: np.ndarray, port: int = 0) -> np.ndarray:
        """int8 values of input `port` for `x` (quantized with its parameters when I/O is float)."""
        if not self.float_io:
            return np.asarray(x).astype(np.int8)
        info = self.info["inputs"][port]
        scaled = np.rint(np.asarray(x, np.float32) / np.float32(info["scale"])) + info["zero_point"]
        return np.clip(scaled, -128, 127).astype(np.int8)

    def packed_inputs(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """[N, INPUT_SIZE] int8: each sample's inputs back to back, in the model's order (the
        feeds by position, as LiteRT takes them)."""
        values = [self.quantize_input(x, k) for k, x in enumerate(feeds.values())]
        return np.concatenate([v.reshape(len(v), -1) for v in values], axis=1)

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        """Raw int8 outputs [N, OUTPUT_SIZE] (every output back to back) for packed int8 inputs."""
        from edgeport.mcu.toolchain.firmware import run_qemu

        return run_qemu(self.firmware, np.asarray(x, np.int8).reshape(len(x), -1))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        packed = self.run_int8(self.packed_inputs(feeds))
        outputs, at = [], 0
        for info in self.info["outputs"]:
            out = packed[:, at:at + info["size"]].reshape(len(packed), *info["shape"][1:])
            at += info["size"]
            if self.float_io:
                out = (out.astype(np.float32) - info["zero_point"]) * np.float32(info["scale"])
            outputs.append(out)
        return outputs

    def estimate_latency(self, feed: dict[str, np.ndarray]) -> dict:
        """Instructions of one inference (exact, unicorn) -> estimated cycles -> ms at the board clock."""
        from edgeport.mcu.toolchain.icount import count_instructions

        x = self.packed_inputs({name: values[:1] for name, values in feed.items()})
        counted = count_instructions(self.firmware.elf, self.name, self.board, x.tobytes())
        values = {k: v for k, v in counted.items() if k not in ("outputs", "latency_ms_estimate")}
        values["estimated_ms"] = round(counted["latency_ms_estimate"], 4)
        if self.info.get("macs"):
            values["macs"] = self.info["macs"]
            values["cycles_per_mac"] = round(counted["cycles_estimate"] / self.info["macs"], 3)
        return values


def _specs(names: list[str], ports: list[dict], dtype: str) -> list[TensorSpec]:
    """The library's ports as specs, named as the model names them (by position)."""
    if len(names) != len(ports):  # the .tflite has other inputs than the model listed: its own names
        names = [p["name"] for p in ports]
    return [TensorSpec(n, (None, *p["shape"][1:]), dtype) for n, p in zip(names, ports)]


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
