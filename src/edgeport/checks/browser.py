"""The browser check: every backend that can run the artifact, each in its own Chromium page.

Per backend it measures what a web app pays: the model's download (raw and gzip) and load
time, the first inference, latency percentiles timed inside the page against the float model
on the same backend, and parity with the float reference on the check's inputs.
"""

from __future__ import annotations

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec, run_batched
from edgeport.checks.measure import latency_feeds, time_sessions
from edgeport.checks.numerics import accuracy, parity_metrics
from edgeport.units import num, size


def _measure_backend(ctx: CheckContext, backend: str) -> dict:
    from edgeport.runtimes.browser import open_session, primary_backend

    s = ctx.settings
    # The primary backend's page is the context's own session: the latency and parity checks
    # already timed it and ran the data through it, so those results are reused, not remade.
    primary = backend == primary_backend(ctx.artifact.path)
    session = ctx.session if primary else open_session(ctx.artifact.path, backend, s.threads)
    baseline = open_session(ctx.float_artifact, backend, s.threads) if ctx.float_artifact else None
    try:
        row = {"load_ms": round(session.load_ms, 3)}
        timing = ctx.session_timing if primary else None
        row.update(timing or time_sessions(session, baseline, latency_feeds(ctx), s.runs, s.warmup,
                                           f"{ctx.target.name} {backend}"))
        row["first_run_ms"] = round(session.first_run_ms, 3)  # timed at load, or on the first feed
        if ctx.refs.data is not None:
            dynamic = all(spec.shape and spec.shape[0] is None for spec in session.inputs)
            outputs = ctx.outputs if primary else run_batched(session.run, ctx.refs.data, s.batch_size, dynamic)
            if ctx.refs.outputs is not None:
                parity = parity_metrics(ctx.refs.outputs[0], outputs[0])
                row.update({f"parity_{k}": v for k, v in parity.items() if k != "samples"})
                row["parity_samples"] = parity["samples"]
            if ctx.refs.data.labels is not None:
                row["accuracy"] = accuracy(outputs[0], ctx.refs.data.labels)
        download = session.download()
        row.update({k: download[k] for k in ("model_bytes", "model_gzip_bytes", "runtime_bytes")})
        if baseline is not None:
            float_download = baseline.download()
            row["float_model_gzip_bytes"] = float_download["model_gzip_bytes"]
            row["gzip_vs_float"] = round(download["model_gzip_bytes"] / float_download["model_gzip_bytes"], 4)
        return row
    finally:
        if not primary:
            session.close()
        if baseline is not None:
            baseline.close()


def check_browser(ctx: CheckContext) -> CheckResult:
    """Download, load, first run, latency, δ and parity for each backend of the artifact."""
    from edgeport.runtimes.browser import backends_for

    rows = {backend: _measure_backend(ctx, backend) for backend in backends_for(ctx.artifact.path)}
    return CheckResult("browser", MEASURED, {"backends": rows, "batch": 1, "runs": ctx.settings.runs,
                                              "timed": "in the page with performance.now(), output read back"})


def browser_lines(values: dict) -> list[str]:
    """One line per browser backend: what a web app downloads and waits for."""
    lines = []
    for backend, row in values.get("backends", {}).items():
        parts = [f"download {size(row.get('model_gzip_bytes'))} gzip ({size(row.get('model_bytes'))} raw"
                 + (f", {100 * row['gzip_vs_float']:.0f}% of float" if row.get("gzip_vs_float") else "") + ")",
                 f"runtime {size(row.get('runtime_bytes'))}", f"load {num(row.get('load_ms'), '.0f')} ms",
                 f"p50 {num(row.get('p50_ms'), '.3f')} ms" + (f" (δ {row['delta']:.2f})" if row.get("delta") else "")]
        if "parity_top1_agreement" in row:
            parts.append(f"top-1 agr {100 * row['parity_top1_agreement']:.2f}%")
        if "parity_cosine" in row:
            parts.append(f"cosine {row['parity_cosine']:.5f}")
        lines.append(f"{backend} in Chromium: " + ", ".join(parts))
    return lines


# After latency: the primary page's timing is the latency check's (`ctx.session_timing`).
BROWSER = CheckSpec("browser", check_browser, runtimes=("chromium",), after=("latency",), lines=browser_lines)
