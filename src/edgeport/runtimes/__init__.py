"""Runtimes that execute artifacts for the checks, one module per runtime.

A runtime reports whether it can run here (and why not) without importing its backend,
so `edgeport targets` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from edgeport.registry import Registry


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output. A `None` dim is dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def concrete_shape(self, batch: int = 1) -> tuple[int, ...]:
        return tuple(batch if d is None else d for d in self.shape)


class Session(Protocol):
    """A loaded artifact, ready to run."""

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class Runtime(Protocol):
    name: str
    latency_unavailable: str | None  # why latency is not measured in this runtime (None: it is)

    def availability(self) -> str | None:
        """None when usable here, otherwise the reason it is not."""

    def load(self, path: str, threads: int) -> Session: ...


RUNTIMES: Registry[Runtime] = Registry("runtime")


def _build() -> None:
    from edgeport.runtimes.browser import ChromiumRuntime
    from edgeport.runtimes.coreml import CoreMLMilRuntime
    from edgeport.runtimes.litert import LiteRTRuntime
    from edgeport.runtimes.onnxruntime import OnnxRuntime
    from edgeport.runtimes.qemu import QemuRuntime

    RUNTIMES.add("onnxruntime", OnnxRuntime())
    RUNTIMES.add("coreml-mil", CoreMLMilRuntime())
    RUNTIMES.add("litert", LiteRTRuntime())
    RUNTIMES.add("chromium", ChromiumRuntime())
    RUNTIMES.add("qemu", QemuRuntime())


_build()
