"""Checks: run an artifact in its runtime and measure it.

A check is a function of a `CheckContext` declared by a `CheckSpec` next to it (which formats and
runtimes it applies to, whether it needs the runtime, which checks must run before it); the specs
are listed, in run order, in `edgeport.plugins.checks()`. A check returns a `CheckResult` that is
either `measured` (with values) or `not-run` (with the reason). It never reports a value it did
not measure. What one check measures and another reuses is a typed attribute of the context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from edgeport.data import Dataset
from edgeport.errors import RuntimeGap
from edgeport.exporters import Artifact, Exporter
from edgeport.model import FloatModel
from edgeport.quantizers.plan import QuantPlan
from edgeport.registry import Registry
from edgeport.tensors import Runtime, Session
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
    layers: bool = False  # per-layer numerics (edgeport.checks.layers), asked for with --layers


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
    """One artifact on one target, and what its checks share.

    Attributes:
        session_timing: What one check measured and another reuses: the latency check's values
            for `session` (at `settings.threads`, against the float model), which the browser
            check (`after=("latency",)`) reports for its primary page instead of timing it again.
        elf_sizes: What one check measured and another reuses: a C library's firmware flash and
            RAM by section (`edgeport.mcu.elfsize`), read from the ELF by the first of the size
            and firmware checks to ask.
    """

    artifact: Artifact
    target: Target
    refs: References
    settings: CheckSettings
    plan: QuantPlan | None = None
    runtime: Runtime | None = None  # the target's runtime (None: not in this edgeport version)
    exporter: Exporter | None = None  # the artifact format's exporter, which also reads it back
    session_timing: dict | None = field(default=None, init=False)
    elf_sizes: dict | None = field(default=None, init=False)


    @cached_property
    def session(self) -> Session:
        return self.runtime.load(str(self.artifact.path), self.settings.threads)

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
        return self.runtime.load(str(self.float_artifact), threads or self.settings.threads)


def run_batched(fn: Callable[[dict], list[np.ndarray]], data: Dataset, batch_size: int,
                dynamic: bool) -> list[np.ndarray]:
    """Run `fn` over `data` in batches (or one sample at a time when the batch dim is fixed)."""
    size = batch_size if dynamic else 1
    chunks = [fn(batch) for batch in data.batches(size)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


Check = Callable[[CheckContext], CheckResult]


@dataclass(frozen=True)
class CheckSpec:
    """One check: its name (the key in the report), the function that runs it, and where it applies.

    Attributes:
        name: Check name, the key of its result in the report.
        run: The check itself.
        formats: Artifact formats it applies to (None: every format).
        runtimes: Runtimes it applies to (None: every runtime).
        needs_runtime: False for a check that reads the artifact's files only, so it runs even
            where the target's runtime is missing.
        after: Checks that must come before this one in the run order, because this one reuses
            what they measured (a `CheckContext` attribute). When such a check does not run, this
            one measures for itself.
        lines: How its measured values read under the target in the table report, beyond the
            columns every target shares (None: the columns say it all).
        enabled: For a check the user asks for (e.g. `--layers`): whether the settings ask for it.
    """

    name: str
    run: Check
    formats: tuple[str, ...] | None = None
    runtimes: tuple[str, ...] | None = None
    needs_runtime: bool = True
    after: tuple[str, ...] = ()
    lines: Callable[[dict], list[str]] | None = None
    enabled: Callable[[CheckSettings], bool] | None = None  # an opt-in check: runs only when this says so

    def applies_to(self, ctx: CheckContext) -> bool:
        return ((self.formats is None or ctx.artifact.format in self.formats)
                and (self.runtimes is None or ctx.target.runtime in self.runtimes))


def check_order(specs: list[CheckSpec]) -> None:
    """Raise ValueError unless every check's `after` names a check listed before it (a registry
    or a list of checks in the wrong order is a programming error, not the user's)."""
    seen: set[str] = set()
    for spec in specs:
        late = [name for name in spec.after if name not in seen]
        if late:
            raise ValueError(f"check '{spec.name}' must come after {', '.join(map(repr, late))}, "
                             "whose measurements it reuses")
        seen.add(spec.name)


def run_checks(ctx: CheckContext, registry: Registry[CheckSpec], names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks of `registry` (default: all) for one artifact, in the registry's order.
    A runtime that is missing here makes every check that needs it `not-run` with the reason."""
    check_order(list(registry))
    for name in names or ():
        registry.get(name)  # an unknown name lists the known ones
    specs = [spec for spec in registry if names is None or spec.name in names]
    runtime_missing = ctx.runtime.availability() if ctx.runtime is not None else \
        f"runtime '{ctx.target.runtime}' is not supported in this version"
    results = []
    for spec in specs:
        if not spec.applies_to(ctx) or (spec.enabled is not None and not spec.enabled(ctx.settings)):
            continue
        if runtime_missing and spec.needs_runtime:
            results.append(CheckResult.not_run(spec.name, runtime_missing))
            continue
        try:
            results.append(spec.run(ctx))
        except RuntimeGap as gap:
            results.append(CheckResult.not_run(spec.name, str(gap)))
    return results
