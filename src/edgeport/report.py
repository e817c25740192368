"""The report: every measurement of one export, as JSON (machines) and a table (people)."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field

from edgeport.budgets import BudgetResult
from edgeport.errors import EXIT_BUDGET, EXIT_OK
from edgeport.checks import MEASURED, CheckResult


@dataclass
class TargetReport:
    target: str
    format: str
    status: str  # "exported" | "skipped"
    artifact: str = ""
    recipe: str = ""
    notes: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    reason: str = ""

    def values(self, check: str) -> dict:
        return next((c.values for c in self.checks if c.name == check and c.status == MEASURED), {})

    def to_dict(self) -> dict:
        return {
            "target": self.target, "format": self.format, "status": self.status, "artifact": self.artifact,
            "recipe": self.recipe, "notes": self.notes, "reason": self.reason,
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

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(b.ok for b in self.budgets) else EXIT_BUDGET

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
            "budgets": [b.to_dict() for b in self.budgets], "exit_code": self.exit_code,
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

_DASH = "-"


def _num(value, fmt: str) -> str:
    return _DASH if value is None else format(value, fmt)


def _size(value) -> str:
    if value is None:
        return _DASH
    for unit, step in (("MB", 1e6), ("KB", 1e3)):
        if value >= step:
            return f"{value / step:.1f} {unit}"
    return f"{value} B"


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
            _num(par.get("max_abs_err"), ".2e"), _num(par.get("cosine"), ".5f"),
            _num(None if "top1_agreement" not in par else 100 * par["top1_agreement"], ".2f"),
            accuracy, honored]


_HEADER = ["target", "recipe", "size", "α", "p50 ms", "p99 ms", "δ", "max|err|", "cosine",
           "top-1 agr %", "accuracy (Δ pts)", "params exact"]


def _mcu_lines(t: TargetReport) -> list[str]:
    """Cortex-M: flash / RAM from the ELF, bit-exactness, and the latency estimate's basis."""
    lines = []
    fw, exact, lat = t.values("firmware"), t.values("bit_exact"), t.values("latency")
    if fw:
        f, r = fw["flash"], fw["ram"]
        lines.append(f"library flash {_size(fw['library_flash_bytes'])} (weights {_size(f['weights'])}, code "
                     f"{_size(f['code'])}), RAM {_size(fw['library_ram_bytes'])} (arena {_size(r['arena'])}); "
                     f"firmware image {_size(fw['flash_bytes'])} flash, {_size(fw['ram_bytes'])} RAM"
                     + (f" of the board's {_size(fw['board_flash_bytes'])} / {_size(fw['board_ram_bytes'])}"
                        if "board_flash_bytes" in fw else ""))
    if exact:
        lines.append(f"QEMU vs LiteRT reference kernels: {exact['identical']}/{exact['samples']} outputs "
                     f"bit-exact (max {exact['max_diff_steps']} int8 steps)")
    if lat.get("estimate"):
        per_mac = f", {lat['cycles_per_mac']:.2f} cycles/MAC" if "cycles_per_mac" in lat else ""
        lines.append(f"latency is an estimate: {lat['instructions']:,} instructions (unicorn) -> "
                     f"{lat['cycles_estimate']:,.0f} cycles{per_mac} -> {lat['p50_ms']:.2f} ms at "
                     f"{lat['clock_hz'] / 1e6:g} MHz")
    return lines


def _browser_line(backend: str, row: dict) -> str:
    """One line per browser backend: what a web app downloads and waits for."""
    parts = [f"download {_size(row.get('model_gzip_bytes'))} gzip ({_size(row.get('model_bytes'))} raw"
             + (f", {100 * row['gzip_vs_float']:.0f}% of float" if row.get("gzip_vs_float") else "") + ")",
             f"runtime {_size(row.get('runtime_bytes'))}", f"load {_num(row.get('load_ms'), '.0f')} ms",
             f"p50 {_num(row.get('p50_ms'), '.3f')} ms" + (f" (δ {row['delta']:.2f})" if row.get("delta") else "")]
    if "parity_top1_agreement" in row:
        parts.append(f"top-1 agr {100 * row['parity_top1_agreement']:.2f}%")
    if "parity_cosine" in row:
        parts.append(f"cosine {row['parity_cosine']:.5f}")
    return f"{backend} in Chromium: " + ", ".join(parts)


def render_table(report: Report) -> str:
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
        if t.status != "exported":
            lines.append(f"{t.target}: skipped ({t.reason})")
            continue
        lines.append(f"{t.target}: {t.artifact}")
        by_threads = t.values("latency").get("by_threads", {})
        if by_threads:
            lines.append("  latency by threads: " + ", ".join(
                f"{n}: p50 {v['p50_ms']:.3f} ms" + (f" (δ {v['delta']:.2f})" if v.get("delta") else "")
                for n, v in by_threads.items()))
        lines += [f"  {line}" for line in _mcu_lines(t)]
        for backend, row in t.values("browser").get("backends", {}).items():
            lines.append("  " + _browser_line(backend, row))
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
    for b in report.budgets:
        lines.append(("  OK  " if b.ok else "  FAIL ") + b.message)
    return "\n".join(lines)
