"""The report: every measurement of one export, as JSON (machines) and a table (people)."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field

from edgeport.budgets import BudgetResult
from edgeport.errors import EXIT_BUDGET, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE
from edgeport.checks import MEASURED, CheckResult
from edgeport.units import DASH as _DASH, num as _num, size as _size


@dataclass
class TargetReport:
    target: str
    format: str
    status: str  # "exported" | "skipped" | "failed" (--keep-going)
    artifact: str = ""
    recipe: str = ""
    notes: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    reason: str = ""
    failure: str = ""  # a failed target's kind: "bad-input" (exit 2) | "internal" (exit 3)

    def values(self, check: str) -> dict:
        return next((c.values for c in self.checks if c.name == check and c.status == MEASURED), {})

    def to_dict(self) -> dict:
        return {
            "target": self.target, "format": self.format, "status": self.status, "artifact": self.artifact,
            "recipe": self.recipe, "notes": self.notes, "reason": self.reason,
            **({"failure": self.failure} if self.failure else {}),
            "checks": {c.name: ({"status": c.status, **c.values} if c.status == MEASURED
                                else {"status": c.status, "reason": c.reason}) for c in self.checks},
        }


@dataclass
class Report:
    """Result of one `export` or `check` run. `exit_code`: 0 ok, 1 a budget breached.
    `notes` are facts about the quantization plan shared by every target (e.g. numbers learned by
    QAT); a target's own notes are on its `TargetReport`."""

    model: str
    source: str
    recipe: dict
    targets: list[TargetReport] = field(default_factory=list)
    budgets: list[BudgetResult] = field(default_factory=list)
    quant_params: str = ""
    environment: dict = field(default_factory=dict)
    cross_target: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    self_checks: list[BudgetResult] = field(default_factory=list)  # always on (edgeport.budgets.self_checks)
    files: list[str] = field(default_factory=list)  # export: every file edgeport wrote into --out
    path: str = ""  # where the JSON report was written

    @property
    def exit_code(self) -> int:
        """3 a target failed on an internal error, 2 one failed on bad input (both --keep-going),
        1 a budget breached or a self-check failed, else 0."""
        failures = {t.failure for t in self.targets if t.status == "failed"}
        if failures:
            return EXIT_INTERNAL if "internal" in failures else EXIT_USAGE
        return EXIT_OK if all(b.ok for b in self.budgets + self.self_checks) else EXIT_BUDGET

    def failed(self) -> list[TargetReport]:
        return [t for t in self.targets if t.status == "failed"]

    def target(self, name: str) -> TargetReport:
        return next(t for t in self.targets if t.target == name)

    def measurements(self) -> dict[str, dict[str, dict]]:
        return {t.target: {c.name: c.values for c in t.checks if c.status == MEASURED}
                for t in self.targets if t.status == "exported"}

    def formats(self) -> dict[str, str]:
        return {t.target: t.format for t in self.targets}

    def not_run_reasons(self) -> dict[str, dict[str, str]]:
        return {t.target: {c.name: c.reason for c in t.checks if c.status != MEASURED} for t in self.targets}

    def to_dict(self) -> dict:
        return {
            "edgeport_report": 1, "model": self.model, "source": self.source, "recipe": self.recipe,
            "quant_params": self.quant_params, "environment": self.environment, "notes": self.notes,
            "targets": [t.to_dict() for t in self.targets],
            "cross_target": self.cross_target,
            "budgets": [b.to_dict() for b in self.budgets],
            "self_checks": [b.to_dict() for b in self.self_checks], "exit_code": self.exit_code,
            **({"files": self.files} if self.files else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        return render_table(self)


def environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("onnx", "onnxruntime", "torch"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "machine": platform.machine(), "packages": versions}


# ------------------------------------------------------------------ table

def _row(t: TargetReport) -> list[str]:
    size, lat, par, acc = t.values("size"), t.values("latency"), t.values("parity"), t.values("accuracy")
    params = t.values("params")
    accuracy = _DASH
    if "accuracy" in acc:
        accuracy = f"{100 * acc['accuracy']:.2f}%"
        if "accuracy_drop_points" in acc:
            accuracy += f" ({-acc['accuracy_drop_points']:+.2f})"
    honored = _DASH if not params else f"{params['exact']}/{params['tensors_checked']}"
    return [t.target, t.recipe, _size(size.get("size_bytes")), _num(size.get("alpha"), ".2f"),
            _num(lat.get("p50_ms"), ".3f"), _num(lat.get("p99_ms"), ".3f"), _num(lat.get("delta"), ".2f"),
            _num(par.get("max_abs_err"), ".2e"), _num(par.get("cosine"), ".5f"), _num(par.get("sqnr_db"), ".1f"),
            _num(None if "top1_agreement" not in par else 100 * par["top1_agreement"], ".2f"),
            accuracy, honored]


_HEADER = ["target", "recipe", "size", "α", "p50 ms", "p99 ms", "δ", "max|err|", "cosine", "SQNR dB",
           "top-1 agr %", "accuracy (Δ pts)", "params exact"]


def render_table(report: Report) -> str:
    """The columns every target shares, then per target the lines its checks declare
    (`CheckSpec.lines`: Cortex-M flash/RAM and bit-exactness, browser backends, ...)."""
    from edgeport.plugins import checks

    specs = {spec.name: spec for spec in checks()}
    exported = [t for t in report.targets if t.status == "exported"]
    rows = [_HEADER] + [_row(t) for t in exported]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
    lines = [f"edgeport report: {report.model} ({report.source})"]
    lines += [f"note: {note}" for note in report.notes]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if j < 2 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    threads = {t.values("latency").get("threads") for t in exported} - {None}
    if threads:
        lines.append(f"latency: batch 1, {', '.join(map(str, sorted(threads)))} thread(s), δ = float p50 / p50 "
                     "in the same run; α = float size / size")
    for t in report.targets:
        if t.status == "failed":
            lines.append(f"{t.target}: FAILED: {t.reason}")
            continue
        if t.status != "exported":
            lines.append(f"{t.target}: skipped ({t.reason})")
            continue
        lines.append(f"{t.target}: {t.artifact}")
        for c in t.checks:  # what a check measured beyond the columns, in its own words
            spec = specs.get(c.name)
            if c.status == MEASURED and spec is not None and spec.lines is not None:
                lines += [f"  {line}" for line in spec.lines(c.values)]
        for note in t.notes:
            lines.append(f"  note: {note}")
        for c in t.checks:
            if c.status != MEASURED:
                lines.append(f"  not measured: {c.name}: {c.reason}")
    for row in report.cross_target:
        steps = f" = {row['max_diff_steps']} quantization steps of the output" if "max_diff_steps" in row else ""
        agree = f", top-1 agreement {100 * row['top1_agreement']:.2f}%" if "top1_agreement" in row else ""
        lines.append(f"cross-target {row['target']} vs {row['base']}: max |diff| {row['max_abs_diff']:.3g}{steps}"
                     f"{agree} ({row['samples']} samples)")
    passed = [b for b in report.self_checks if b.ok and not b.warning]
    if passed:
        lines.append(f"  OK  self-checks: {len(passed)} passed ("
                     + ", ".join(sorted({b.budget for b in passed})) + ")")
    for b in report.budgets + [b for b in report.self_checks if b not in passed]:
        lines.append(("  WARN " if b.warning else "  OK  " if b.ok else "  FAIL ") + b.message)
    return "\n".join(lines)
