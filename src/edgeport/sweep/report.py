"""The sweep's report: every configuration and, per target, its Pareto frontiers, as JSON
(`sweep.json`), a table (terminal), and an HTML page with plots (`report.html`, `plots/`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeport.checks import CheckSettings
from edgeport.errors import EXIT_OK
from edgeport.recipe import Recipe
from edgeport.report import environment
from edgeport.sweep.pareto import dominators, pareto_front
from edgeport.sweep.records import OK, Configuration

JSON_NAME, HTML_NAME, PLOTS_DIR = "sweep.json", "report.html", "plots"
EXIT_NOTHING_MEASURED = 1  # every configuration was refused or failed
METRIC_LABELS = {"accuracy": "accuracy", "agreement": "top-1 agreement with float"}
COSTS = ("size", "latency")


@dataclass
class TargetSummary:
    """One target's configurations and frontiers (quality vs size, quality vs latency).

    Attributes:
        metric: `accuracy` when any configuration measured it (labeled eval data), else `agreement`.
        quality: Recipe -> the metric as a fraction (None when not measured).
        float_quality: The float model's accuracy, when measured.
        latency_estimate: Latencies are estimates (an emulated core), not timings.
        fronts: `size` / `latency` -> recipes on that frontier, by increasing cost.
        dominated_by: `size` / `latency` -> recipe -> recipes that beat it on both axes.
    """

    target: str
    configurations: list[Configuration]
    metric: str
    quality: dict[str, float | None]
    float_quality: float | None
    latency_estimate: bool
    fronts: dict[str, list[str]] = field(default_factory=dict)
    dominated_by: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def cost(self, config: Configuration, axis: str) -> float | None:
        return config.size_bytes if axis == "size" else config.latency_ms

    def points(self, axis: str) -> list[tuple[float, float] | None]:
        """(cost, quality) per configuration, None where either is missing or it did not export."""
        return [(self.cost(c, axis), self.quality[c.recipe])
                if c.status == OK and self.cost(c, axis) is not None and self.quality[c.recipe] is not None
                else None for c in self.configurations]

    def to_dict(self) -> dict:
        return {"metric": self.metric, "float_quality": self.float_quality, "latency_estimate": self.latency_estimate,
                "fronts": self.fronts, "dominated_by": self.dominated_by}


def summarize(target: str, configurations: list[Configuration]) -> TargetSummary:
    """The target's metric and frontiers, from its configurations (pure)."""
    rows = [c for c in configurations if c.target == target]
    metric = "accuracy" if any(c.accuracy is not None for c in rows) else "agreement"
    quality = {c.recipe: c.accuracy if metric == "accuracy" else c.agreement for c in rows}
    floats = [c.float_accuracy for c in rows if c.float_accuracy is not None]
    summary = TargetSummary(target, rows, metric, quality, floats[0] if floats else None,
                            any(c.latency_estimate for c in rows))
    for axis in COSTS:
        points = summary.points(axis)
        summary.fronts[axis] = [rows[i].recipe for i in pareto_front(points)]
        summary.dominated_by[axis] = {rows[i].recipe: [rows[j].recipe for j in dominators(points, i)]
                                      for i in range(len(rows)) if dominators(points, i)}
    return summary


@dataclass
class SweepReport:
    """Result of one sweep. `exit_code`: 0 when at least one configuration was exported and checked."""

    source: str
    targets: list[str]
    recipes: dict[str, Recipe]
    configurations: list[Configuration]
    settings: CheckSettings
    workers: int
    executor: str
    calib: str | None = None
    eval: str | None = None
    seconds: float | None = None
    plots: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> kind -> path in out
    sources: dict[str, str] = field(default_factory=dict)  # variant row -> its own source
    environment: dict = field(default_factory=environment)

    def summaries(self) -> dict[str, TargetSummary]:
        return {t: summarize(t, self.configurations) for t in self.targets}

    def problems(self) -> list[Configuration]:
        """Refused and failed configurations."""
        return [c for c in self.configurations if c.status != OK]

    @property
    def exit_code(self) -> int:
        return EXIT_OK if any(c.status == OK for c in self.configurations) else EXIT_NOTHING_MEASURED

    def latency_note(self) -> str:
        note = (f"latency: p50 at batch 1, {self.settings.runs} timed runs after {self.settings.warmup} warm-up, "
                f"{self.settings.threads} thread(s)")
        if self.workers > 1:
            note += (f"; {self.workers} recipes were exported and timed at the same time on this machine, "
                     "so timings can include contention (use --workers 1 for quiet timings)")
        return note

    def to_dict(self) -> dict:
        return {
            "edgeport_sweep": 1, "source": self.source, "targets": self.targets,
            "recipes": {n: {**r.to_dict(), "description": r.describe(),
                            **({"source": self.sources[n]} if n in self.sources else {})}
                        for n, r in self.recipes.items()},
            "calib": self.calib, "eval": self.eval, "settings": asdict(self.settings), "workers": self.workers,
            "executor": self.executor, "seconds": self.seconds, "environment": self.environment,
            "latency_note": self.latency_note(),
            "configurations": [c.to_dict() for c in self.configurations],
            "frontiers": {t: s.to_dict() for t, s in self.summaries().items()},
            "plots": self.plots, "exit_code": self.exit_code,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        return render_table(self)


# ------------------------------------------------------------------ table

def size_text(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, step in (("MB", 1e6), ("KB", 1e3)):
        if value >= step:
            return f"{value / step:.1f} {unit}"
    return f"{value} B"


def percent_text(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def latency_text(config: Configuration) -> str:
    if config.latency_ms is None:
        return "-"
    return f"{config.latency_ms:.3f}" + (" (est.)" if config.latency_estimate else "")


def frontier_text(summary: TargetSummary, config: Configuration, axis: str, named: int = 2) -> str:
    """`yes`, or `no (by ...)` naming up to `named` recipes that beat it (frontier ones first)."""
    if config.recipe in summary.fronts[axis]:
        return "yes"
    beaten = summary.dominated_by[axis].get(config.recipe)
    if not beaten:
        return "-"
    beaten = sorted(beaten, key=lambda r: r not in summary.fronts[axis])
    more = f", +{len(beaten) - named}" if len(beaten) > named else ""
    return f"no (by {', '.join(beaten[:named])}{more})"


def table_rows(summary: TargetSummary) -> list[list[str]]:
    """Per configuration: recipe, size, α, p50 ms, metric, on the size / latency frontier, status."""
    return [[c.recipe, size_text(c.size_bytes), "-" if c.alpha is None else f"{c.alpha:.2f}", latency_text(c),
             percent_text(summary.quality[c.recipe]), frontier_text(summary, c, "size"),
             frontier_text(summary, c, "latency"), c.status] for c in summary.configurations]


def table_header(summary: TargetSummary) -> list[str]:
    return ["recipe", "size", "α", "p50 ms", METRIC_LABELS[summary.metric], "frontier (size)",
            "frontier (latency)", "status"]


def render_table(report: SweepReport) -> str:
    lines = [(f"edgeport sweep: {report.source}: {len(report.recipes)} recipes x {len(report.targets)} targets "
              f"in {report.seconds} s ({report.workers} worker(s), executor {report.executor})")]
    for target, summary in report.summaries().items():
        rows = [table_header(summary)] + table_rows(summary)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines.append(f"\n{target}" + (" (latency estimated on the emulated core)" if summary.latency_estimate else ""))
        for i, row in enumerate(rows):
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
    lines.append("\n" + report.latency_note())
    for c in report.problems():
        lines.append(f"{c.status}: {c.recipe} x {c.target}: {c.error}")
    return "\n".join(lines)


# ------------------------------------------------------------------ files

def write_outputs(report: SweepReport, out: Path) -> None:
    """Write `plots/` (replacing the previous sweep's), `report.html` and `sweep.json` into `out`."""
    from edgeport.sweep.html import render_html
    from edgeport.sweep.plots import write_plots

    staging = Path(tempfile.mkdtemp(prefix=".plots-", dir=out))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the plots from a web server serving `out`
    try:
        report.plots = {t: {k: f"{PLOTS_DIR}/{name}" for k, name in kinds.items()}
                        for t, kinds in write_plots(report, staging).items()}
        old = out / PLOTS_DIR
        if old.exists():
            shutil.rmtree(old)
        os.replace(staging, old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_text(out / HTML_NAME, render_html(report))
    _write_text(out / JSON_NAME, report.to_json())


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
