"""Budgets: limits on measurements that turn a report into an exit code (1 when any is breached).

Self-checks are budgets every export has without asking: an artifact whose numbers are wrong
(a C library not bit-exact with LiteRT, parity far below what the recipe gives) fails the run
with exit 1 like a breached budget, unless `--allow-mismatch` makes them warnings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edgeport.errors import InputError


@dataclass(frozen=True)
class BudgetKind:
    check: str
    value: str
    op: str  # "<=" or ">="
    unit: str
    what: str
    formats: tuple[str, ...] | None = None  # artifact formats it applies to (None: every format)


BUDGET_KINDS = {
    "max_size": BudgetKind("size", "size_bytes", "<=", "B", "artifact size"),
    "max_latency": BudgetKind("latency", "p50_ms", "<=", "ms", "p50 latency"),
    "min_agreement": BudgetKind("parity", "top1_agreement", ">=", "", "top-1 agreement with the float model"),
    "min_cosine": BudgetKind("parity", "cosine", ">=", "", "cosine with the float model (worst output)"),
    "min_sqnr": BudgetKind("parity", "sqnr_db", ">=", "dB", "SQNR vs the float model (worst output)"),
    "max_accuracy_drop": BudgetKind("accuracy", "accuracy_drop_points", "<=", "points", "accuracy drop vs float"),
    "max_flash": BudgetKind("firmware", "library_flash_bytes", "<=", "B", "library flash (weights + code)", ("c",)),
    "max_ram": BudgetKind("firmware", "library_ram_bytes", "<=", "B", "library RAM (arena + data)", ("c",)),
}

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(text: str | int | float, name: str = "max_size") -> float:
    """'150KB' -> 150000, '1.5MiB' -> 1572864, 2048 -> 2048."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise InputError(f"{name}: cannot read '{text}' (examples: 250000, 250KB, 1.5MiB)")
    return float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _number(name: str, text, suffixes: tuple[str, ...] = ()) -> float:
    raw = str(text).strip()
    percent = raw.endswith("%")
    for suffix in suffixes + (("%",) if percent else ()):
        raw = raw.removesuffix(suffix)
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name}: cannot read '{text}' as a number") from None
    return value / 100 if percent else value


def parse_budgets(raw: dict) -> dict[str, float]:
    """Validate budget settings ({name: text or number}); None values are dropped."""
    budgets = {}
    for name, value in raw.items():
        if value is None:
            continue
        if name not in BUDGET_KINDS:
            raise InputError(f"unknown budget '{name}' (known: {', '.join(BUDGET_KINDS)})")
        if BUDGET_KINDS[name].unit == "B":
            budgets[name] = parse_size(value, name)
        elif name == "max_latency":
            budgets[name] = _number(name, value, ("ms",))
        elif name == "min_sqnr":
            budgets[name] = _number(name, value, ("dB", "db"))
        else:
            budgets[name] = _number(name, value)
        if not math.isfinite(budgets[name]) or budgets[name] < 0:
            raise InputError(f"{name}: must be a finite number >= 0, not '{value}'")
    for name in ("min_agreement", "min_cosine"):
        if name in budgets and budgets[name] > 1:
            raise InputError(f"{name}: give a fraction (0.99) or a percentage (99%)")
    return budgets


@dataclass
class BudgetResult:
    budget: str
    target: str
    limit: float
    measured: float | None
    ok: bool
    message: str
    warning: bool = False  # a failed self-check downgraded by --allow-mismatch

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _fmt(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:.4g} {unit}".strip()


def evaluate(budgets: dict[str, float], measurements: dict[str, dict[str, dict]],
             reasons: dict[str, dict[str, str]], formats: dict[str, str] | None = None) -> list[BudgetResult]:
    """Check each budget on each target. `measurements[target][check]` holds measured values;
    `reasons[target][check]` says why a check did not run; `formats[target]` is its artifact
    format (a budget for one kind of device, e.g. flash, skips targets of other formats). A budget
    whose measurement is missing fails: a release gate must not pass on a number nobody measured."""
    results = []
    for target, checks in measurements.items():
        for name, limit in budgets.items():
            kind = BUDGET_KINDS[name]
            if kind.formats is not None and formats is not None and formats.get(target) not in kind.formats:
                continue
            measured = checks.get(kind.check, {}).get(kind.value)
            if measured is None:
                why = reasons.get(target, {}).get(kind.check) or f"{kind.what} not measured"
                results.append(BudgetResult(name, target, limit, None, False,
                                            f"budget {name} on {target}: not measured ({why})"))
                continue
            ok = measured <= limit if kind.op == "<=" else measured >= limit
            verb = "ok" if ok else "exceeded" if kind.op == "<=" else "not met"
            results.append(BudgetResult(name, target, limit, measured, ok,
                                        f"budget {name} {verb} on {target}: {kind.what} {_fmt(measured, kind.unit)} "
                                        f"(limit {kind.op} {_fmt(limit, kind.unit)})"))
    return results


def self_checks(measurements: dict[str, dict[str, dict]], parity_floor: float | None,
                allow_mismatch: bool = False) -> list[BudgetResult]:
    """The always-on checks of each target's numbers: the C library bit-exact with LiteRT's
    reference kernels, and parity with the float model at least `parity_floor` (cosine; None
    when the recipe is not known, e.g. `check` of a file made elsewhere)."""
    results = []
    hint = "reported as a warning (--allow-mismatch)" if allow_mismatch else "--allow-mismatch makes this a warning"

    def add(name: str, target: str, limit: float, measured: float, ok: bool, what: str) -> None:
        message = f"self-check {name} {'ok' if ok else 'FAILED'} on {target}: {what}"
        if not ok:
            message += f"; the artifact's numbers are wrong ({hint})"
        results.append(BudgetResult(name, target, limit, measured, ok or allow_mismatch, message,
                                    warning=not ok and allow_mismatch))

    for target, checks in measurements.items():
        exact = checks.get("bit_exact")
        if exact:
            add("bit_exact", target, exact["samples"], exact["identical"], bool(exact["bit_exact"]),
                f"{exact['identical']}/{exact['samples']} outputs bit-exact with LiteRT's reference kernels "
                f"(max {exact['max_diff_steps']} int8 steps)")
        cosine = checks.get("parity", {}).get("cosine")
        if parity_floor is not None and cosine is not None:
            ok = math.isfinite(cosine) and cosine >= parity_floor
            add("parity", target, parity_floor, cosine, ok,
                f"cosine {cosine:.4f} with the float model (the recipe gives >= {parity_floor} on a correct artifact)")
    return results
