"""Checks: run an artifact in its runtime and measure it. One registered function per check.

A check returns a `CheckResult` that is either `measured` (with values) or `not-run` (with the
reason). It never reports a value it did not measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from edgeport.data import Dataset
from edgeport.errors import RuntimeGap
from edgeport.exporters import Artifact
from edgeport.model import FloatModel
from edgeport.quantizers.plan import QuantPlan
from edgeport import plugins
from edgeport.tensors import Session
from edgeport.targets import Target

MEASURED, NOT_RUN = "measured", "not-run"


@dataclass
class CheckResult:
    name: str
    status: str
    values: dict = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def not_run(cls, name: str, reason: str) -> "CheckResult":
        return cls(name, NOT_RUN, reason=reason)


@dataclass
class CheckSettings:
    """Latency: `warmup` untimed runs, then `runs` timed runs at batch 1 on `threads` threads."""

    runs: int = 100
    warmup: int = 10
    threads: int = 1
    batch_size: int = 64


@dataclass
class References:
    """Float reference and inputs shared by every target of one export (computed once)."""

    model: FloatModel | None
    data: Dataset | None
    float_artifact: Path | None
    batch_size: int = 64

    @cached_property
    def outputs(self) -> list[np.ndarray] | None:
        if self.model is None or self.data is None:
            return None
        return run_batched(self.model.reference, self.data, self.batch_size, dynamic=True)


@dataclass
class CheckContext:
    artifact: Artifact
    target: Target
    refs: References
    settings: CheckSettings
    plan: QuantPlan | None = None
    shared: dict = field(default_factory=dict)  # what one check measured and another reuses

    @cached_property
    def session(self) -> Session:
        runtime = plugins.runtimes().get(self.target.runtime)
        return runtime.load(str(self.artifact.path), self.settings.threads)

    @cached_property
    def outputs(self) -> list[np.ndarray] | None:
        """Artifact outputs on the reference inputs (None when there are no inputs)."""
        if self.refs.data is None:
            return None
        session = self.session
        dynamic = all(spec.shape and spec.shape[0] is None for spec in session.inputs)
        return run_batched(session.run, self.refs.data, self.settings.batch_size, dynamic)

    @property
    def float_artifact(self) -> Path | None:
        """The float model to compare size and speed with: the exporter's own float build in the
        same format if it made one, else the float ONNX model."""
        return self.artifact.baseline or self.refs.float_artifact

    def float_session(self, threads: int | None = None) -> Session | None:
        if self.float_artifact is None:
            return None
        return plugins.runtimes().get(self.target.runtime).load(str(self.float_artifact), threads or self.settings.threads)


def run_batched(fn: Callable[[dict], list[np.ndarray]], data: Dataset, batch_size: int,
                dynamic: bool) -> list[np.ndarray]:
    """Run `fn` over `data` in batches (or one sample at a time when the batch dim is fixed)."""
    size = batch_size if dynamic else 1
    chunks = [fn(batch) for batch in data.batches(size)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


Check = Callable[[CheckContext], CheckResult]


def run_checks(ctx: CheckContext, names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks (default: all) for one artifact. A runtime that is missing here makes
    every check that needs it `not-run` with the reason."""
    results = []
    runtime_missing = plugins.runtimes().get(ctx.target.runtime).availability() if ctx.target.runtime in plugins.runtimes() else \
        f"runtime '{ctx.target.runtime}' is not supported in this version"
    for name in names or plugins.checks().names():
        check = plugins.checks().get(name)
        formats = getattr(check, "formats", None)
        if formats is not None and ctx.artifact.format not in formats:
            continue
        runtimes = getattr(check, "runtimes", None)
        if runtimes is not None and ctx.target.runtime not in runtimes:
            continue
        if runtime_missing and getattr(check, "needs_runtime", True):
            results.append(CheckResult.not_run(name, runtime_missing))
            continue
        try:
            results.append(check(ctx))
        except RuntimeGap as gap:
            results.append(CheckResult.not_run(name, str(gap)))
    return results
