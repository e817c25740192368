"""Size and latency checks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec
from edgeport.exporters import artifact_bytes
from edgeport.progress import progress
from edgeport.tensors import Session


def parameter_count(path: Path, fmt: str) -> int | None:
    """Number of weight elements stored in an ONNX artifact (initializers of rank >= 1)."""
    if fmt != "onnx":
        return None
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(i.dims)) for i in model.graph.initializer if len(i.dims) >= 1
                   and not i.name.endswith(("_scale", "_zero_point"))))


def check_size(ctx: CheckContext) -> CheckResult:
    if ctx.artifact.format == "c":  # a source folder: what ships is the library's flash, from the ELF
        from edgeport.checks.mcu import library_flash

        return CheckResult("size", MEASURED, {"size_bytes": library_flash(ctx),
                                              "what": "C library flash: weights + code + constants"})
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


SIZE = CheckSpec("size", check_size, needs_runtime=False)


def check_structure(ctx: CheckContext) -> CheckResult:
    """Op list and weight bytes by storage kind, read from the artifact."""
    described = ctx.exporter.describe(ctx.artifact.path) if ctx.exporter is not None else None
    if described is None:
        return CheckResult.not_run("structure", f"reading '{ctx.artifact.format}' structure is not supported")
    return CheckResult("structure", MEASURED, described)


STRUCTURE = CheckSpec("structure", check_structure, needs_runtime=False)


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 4) for q in (50, 90, 99)}


def latency_feeds(ctx: CheckContext, count: int = 8) -> list[dict[str, np.ndarray]]:
    """Inputs to time the artifact on, one sample each (batch 1): the first `count` samples of
    the check's data when there is any, else one all-zeros input."""
    data = ctx.refs.data
    if data is not None:
        return [{k: v[i:i + 1] for k, v in data.feeds.items()} for i in range(min(count, len(data)))]
    return [{s.name: np.zeros(s.concrete_shape(1), dtype=s.dtype) for s in ctx.session.inputs}]


def check_latency(ctx: CheckContext) -> CheckResult:
    """p50/p90/p99 at batch 1 for each thread count of the target (default: `--threads`). The float
    model is timed interleaved with the artifact, so the speedup δ = float p50 / artifact p50
    compares runs made under the same machine load. Top-level values are for the first count."""
    unavailable = ctx.runtime.latency_unavailable
    if unavailable:
        return CheckResult.not_run("latency", unavailable)
    if ctx.session.timing == "estimate":  # emulated boards: counted, not timed
        return _estimated_latency(ctx)
    s = ctx.settings
    counts = ctx.target.latency_threads or (s.threads,)
    by_threads = {str(n): _time_interleaved(ctx, n) for n in counts}
    values = {"threads": counts[0], "runs": s.runs, "warmup": s.warmup, "batch": 1, **by_threads[str(counts[0])]}
    if len(counts) > 1:
        values["by_threads"] = by_threads
    return CheckResult("latency", MEASURED, values)


def latency_lines(lat: dict) -> list[str]:
    """Latency per thread count; for an emulated board, how the estimate was made."""
    lines = []
    if lat.get("by_threads"):
        lines.append("latency by threads: " + ", ".join(
            f"{n}: p50 {v['p50_ms']:.3f} ms" + (f" (δ {v['delta']:.2f})" if v.get("delta") else "")
            for n, v in lat["by_threads"].items()))
    if lat.get("estimate"):
        per_mac = f", {lat['cycles_per_mac']:.2f} cycles/MAC" if "cycles_per_mac" in lat else ""
        lines.append(f"latency is an estimate: {lat['instructions']:,} instructions (unicorn) -> "
                     f"{lat['cycles_estimate']:,.0f} cycles{per_mac} -> {lat['p50_ms']:.2f} ms at "
                     f"{lat['clock_hz'] / 1e6:g} MHz")
    return lines


LATENCY = CheckSpec("latency", check_latency, lines=latency_lines)


def _estimated_latency(ctx: CheckContext) -> CheckResult:
    """The emulator's instruction count of one inference, at the board clock (see `Session`)."""
    estimate = ctx.session.estimate_latency(latency_feeds(ctx)[0])
    if "estimated_ms" not in estimate:
        return CheckResult.not_run("latency", estimate.get("reason", "no cycle model for this core"))
    ms = estimate["estimated_ms"]
    return CheckResult("latency", MEASURED, {"estimate": True, "p50_ms": ms, "p90_ms": ms, "p99_ms": ms,
                                             "batch": 1, **estimate})


def _time_interleaved(ctx: CheckContext, threads: int) -> dict:
    s = ctx.settings
    session = ctx.session if threads == s.threads else ctx.runtime.load(str(ctx.artifact.path), threads)
    values = time_sessions(session, ctx.float_session(threads), latency_feeds(ctx), s.runs, s.warmup,
                           f"latency {ctx.target.name} ({threads} thread(s))")
    if session is ctx.session:
        ctx.session_timing = values
    return values


def _wall_clock(session: Session, feed: dict, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        session.run(feed)
        times.append(time.perf_counter() - start)
    return times


def _self_timed(session: Session, feed: dict, count: int) -> list[float]:
    return session.time_runs(feed, count, 0)


# Session `timing` -> (seconds per run of `count` runs, runs per call). A self-timed session (a
# browser page, with performance.now()) leaves out the cost of driving it from Python, and runs a
# block per call so that cost is paid once per block.
TIMERS: dict[str, tuple[Callable[[Session, dict, int], list[float]], int]] = {
    "wall": (_wall_clock, 1),
    "self": (_self_timed, 10),
}


def time_sessions(session: Session, baseline: Session | None, feeds: list[dict], runs: int, warmup: int,
                  desc: str) -> dict:
    """p50/p90/p99 of `session` and, when a float `baseline` session is given, its p50 and the
    speedup δ, the two timed in alternation so both see the same machine load. Both sessions are
    timed the way their `timing` says ("wall" or "self")."""
    block = TIMERS[session.timing][1]
    runners = [("artifact", session)] + ([("float", baseline)] if baseline is not None else [])
    for _, sess in runners:
        for i in range(warmup):
            sess.run(feeds[i % len(feeds)])
    times: dict[str, list[float]] = {name: [] for name, _ in runners}
    starts = range(0, runs, block)
    for i in progress(starts, total=len(starts), desc=desc):
        feed = feeds[(i // block) % len(feeds)]
        for name, sess in runners:
            times[name] += TIMERS[sess.timing][0](sess, feed, min(block, runs - i))
    values = percentiles_ms(times["artifact"])
    if baseline is not None:
        values["float_p50_ms"] = percentiles_ms(times["float"])["p50_ms"]
        values["delta"] = round(values["float_p50_ms"] / values["p50_ms"], 3) if values["p50_ms"] > 0 else None
    return values
