"""Value types shared by every layer: tensor specs and the session / runtime protocols.

This module imports nothing from edgeport, so any module can use these types without pulling in
runtimes, exporters or checks (the layer contracts in `pyproject.toml` keep it that way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output. A `None` dim is dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def concrete_shape(self, batch: int = 1) -> tuple[int, ...]:
        return tuple(batch if d is None else d for d in self.shape)

    @property
    def batched(self) -> bool:
        """Axis 0 is the sample axis (dynamic or 1). Otherwise the input is taken whole per sample: a
        scalar (a sample rate) or a tensor whose batch is elsewhere (a recurrent state [2, batch, 128]),
        and data gives it as [N, *shape]."""
        return bool(self.shape) and self.shape[0] in (None, 1)


def fit_feeds(feeds: dict[str, np.ndarray], specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """`feeds` as a session takes them. Data carries a leading sample axis on every input; for one
    sample of an input taken whole (not `batched`) that axis is dropped, so [1, 2, 1, 128] feeds a
    [2, 1, 128] state and [1] a scalar."""
    fitted = dict(feeds)
    for spec in specs:
        value = fitted.get(spec.name)
        if value is not None and np.ndim(value) == len(spec.shape) + 1 and np.shape(value)[0] == 1:
            fitted[spec.name] = np.asarray(value)[0, ...]  # a 0-d array, not a NumPy scalar
    return fitted


Timing = Literal["wall", "self", "estimate"]


class Session(Protocol):
    """A loaded artifact, ready to run.

    Capabilities are declared, not discovered: `timing` says how the latency check measures it.

    - "wall": a wall clock around each `run`.
    - "self": the session times its own runs, leaving out the cost of driving it from Python, with
      `time_runs(feeds, runs, warmup) -> list[float]` (seconds per inference, `warmup` untimed
      runs first; a browser page timing with performance.now()).
    - "estimate": nothing is timed; an emulator counts the instructions of one inference with
      `estimate_latency(feed) -> dict`, whose "estimated_ms" is the latency at the board clock
      (no "estimated_ms" when the core has no cycle model; a "reason" may say why).
    """

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    timing: ClassVar[Timing]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class Runtime(Protocol):
    name: str
    latency_unavailable: str | None  # why latency is not measured in this runtime (None: it is)

    def availability(self) -> str | None:
        """None when usable here, otherwise the reason it is not."""

    def load(self, path: str, threads: int) -> Session: ...
