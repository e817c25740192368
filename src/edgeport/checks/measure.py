"""Size and latency checks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult
from edgeport.exporters import EXPORTERS, artifact_bytes
from edgeport.progress import progress


def parameter_count(path: Path, fmt: str) -> int | None:
    """Number of weight elements stored in an ONNX artifact (initializers of rank >= 1)."""
    if fmt != "onnx":
        return None
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(i.dims)) for i in model.graph.initializer if len(i.dims) >= 1
                   and not i.name.endswith(("_scale", "_zero_point"))))


def check_size(ctx: CheckContext) -> CheckResult:
    size = artifact_bytes(ctx.artifact.path)
    values = {"size_bytes": size}
    params = parameter_count(ctx.artifact.path, ctx.artifact.format)
    if params is not None:
        values["params"] = params
    if ctx.float_artifact is not None:
        float_size = artifact_bytes(ctx.float_artifact)
        values["float_size_bytes"] = float_size
        values["alpha"] = round(float_size / size, 3)
    return CheckResult("size", MEASURED, values)


check_size.needs_runtime = False


def check_structure(ctx: CheckContext) -> CheckResult:
    """Op list and weight bytes by storage kind, read from the artifact."""
    described = EXPORTERS.get(ctx.artifact.format).describe(ctx.artifact.path) \
        if ctx.artifact.format in EXPORTERS else None
    if described is None:
        return CheckResult.not_run("structure", f"reading '{ctx.artifact.format}' structure is not supported")
    return CheckResult("structure", MEASURED, described)


check_structure.needs_runtime = False


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 4) for q in (50, 90, 99)}


def _latency_feeds(ctx: CheckContext, count: int = 8) -> list[dict[str, np.ndarray]]:
    """Batch-1 inputs: real samples when there are any, else zeros."""
    data = ctx.refs.data
    if data is not None:
        return [{k: v[i:i + 1] for k, v in data.feeds.items()} for i in range(min(count, len(data)))]
    return [{s.name: np.zeros(s.concrete_shape(1), dtype=s.dtype) for s in ctx.session.inputs}]


def check_latency(ctx: CheckContext) -> CheckResult:
    """p50/p90/p99 at batch 1; the float model is timed interleaved with the artifact, so the
    speedup δ = float p50 / artifact p50 compares runs made under the same machine load."""
    from edgeport.runtimes import RUNTIMES

    unavailable = RUNTIMES.get(ctx.target.runtime).latency_unavailable
    if unavailable:
        return CheckResult.not_run("latency", unavailable)
    s = ctx.settings
    session, baseline = ctx.session, ctx.float_session()
    feeds = _latency_feeds(ctx)
    runners = [("artifact", session)] + ([("float", baseline)] if baseline is not None else [])
    for _, sess in runners:
        for i in range(s.warmup):
            sess.run(feeds[i % len(feeds)])
    times: dict[str, list[float]] = {name: [] for name, _ in runners}
    for i in progress(range(s.runs), total=s.runs, desc=f"latency {ctx.target.name}"):
        feed = feeds[i % len(feeds)]
        for name, sess in runners:
            start = time.perf_counter()
            sess.run(feed)
            times[name].append(time.perf_counter() - start)
    values = {"threads": s.threads, "runs": s.runs, "warmup": s.warmup, "batch": 1, **percentiles_ms(times["artifact"])}
    if baseline is not None:
        float_p50 = percentiles_ms(times["float"])["p50_ms"]
        values["float_p50_ms"] = float_p50
        values["delta"] = round(float_p50 / values["p50_ms"], 3) if values["p50_ms"] > 0 else None
    return CheckResult("latency", MEASURED, values)
