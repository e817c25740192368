"""Value types shared by every layer: tensor specs and the session / runtime protocols.

This module imports nothing from edgeport, so any module can use these types without pulling in
runtimes, exporters or checks (the layer contracts in `pyproject.toml` keep it that way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output. A `None` dim is dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def concrete_shape(self, batch: int = 1) -> tuple[int, ...]:
        return tuple(batch if d is None else d for d in self.shape)


class Session(Protocol):
    """A loaded artifact, ready to run.

    Capabilities are declared, not discovered: `timing` says how the latency check measures it
    ("wall" clock around `run`, "self" when the session times a block of runs itself with
    `time_runs(feeds, n) -> seconds per run`, "estimate" when an emulator counts instructions
    and `estimate_latency()` gives the figure).
    """

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    timing: ClassVar[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class Runtime(Protocol):
    name: str
    latency_unavailable: str | None  # why latency is not measured in this runtime (None: it is)

    def availability(self) -> str | None:
        """None when usable here, otherwise the reason it is not."""

    def load(self, path: str, threads: int) -> Session: ...
