"""Quantization numerics on trained models: size, α, cosine, SQNR, accuracy per recipe and target.

    .venv/bin/python benchmarks/numerics.py [--models digits,tiny_transformer,...]
        [--variants int8,int8-percentile,...] [--targets onnx,android,cortex-m7]
        [--zoo-samples 16] [--timeout 1800] [--json out/numerics.json]

Models (all trained; nothing is downloaded at run time):

- `digits`: the digits CNN sample (`samples.digits.model:build`), calibrated on
  `samples/digits/calib.npz` (200 samples) and checked on `samples/digits/eval.npz` (359, labeled:
  accuracy is measured).
- `tiny_transformer`: a 2-layer transformer encoder classifier trained here on a synthetic
  counting task (`benchmarks/zoo/tiny_transformer.py`; the first build trains it in a few
  seconds and caches the weights in the system temporary folder), 64 calibration and 256 labeled eval
  sequences from their own seeds.
- `ppocr_v4_rec`, `ppocr_v4_det`, `nudenet_320n`, `silero_vad_16k`: the conformance zoo's trained
  ONNX models, read from installed wheels (`benchmarks/zoo/trained.py`), with the zoo's realistic
  inputs (`Entry.write_data`, the code `benchmarks/zoo.py` uses): `--zoo-samples` (16, at most 128)
  calibration samples and as many eval samples from another seed, unlabeled (parity only). Any
  other zoo entry name works too.

Variants (one `edgeport export` of the model per variant, with all its targets, `--keep-going`):
`int8` (minmax calibration), `int8-percentile` (`--calibration percentile`), `int8-mse`
(`--calibration mse`), `int8-auto` (`--calibration auto`: the method measuring best),
`int8-equalize` (cross-layer equalization), `int8-per-tensor` and `int8-per-tensor-equalize` (what
equalization is for: one weight scale per tensor), `int8-smoothquant` (`--smoothquant 0.5`),
`int8-bias-correction`, `int8-fallback` (`--fallback auto --min-cosine 0.99`), `weight-only-int4`,
`dynamic-int8`. Each algorithm variant is the `int8` recipe plus that one option, so its effect is
the difference from the `int8` row.

Targets: `onnx` and `android` for every model; C library targets (`cortex-m7` by default) for
`digits` only (the C library runs int8 kernels: it refuses dynamic-int8 and weight-only-int4, and
`--fallback auto` when the fallback moved layers; those cells show its reason).

Each row is one (model, variant, target): the artifact's size (KB = 1000 B), α (float size /
size, from the report's size check; the C library reports its flash, with no float baseline),
the worst output's cosine and SQNR (dB) against the float model on the eval data, accuracy and
its drop in points (float minus artifact) where the eval data has labels, and for `int8-fallback` the layers moved
(to int16 activations, to float) and the share of the quantizable weights left in float (above 8 bits), from the fallback
record in `quant_params.json`. A refused (bad input / the format cannot hold it) or failed
(internal error, crash, timeout) cell prints its one-line reason instead. Latency is not measured
here: each export times `--runs 2 --warmup 0` only to stay cheap, and those figures are dropped.

Every export runs `edgeport export ... --json` in its own process (the CLI, as a user runs it),
into a temporary folder removed afterwards. `--json FILE` writes every cell (rewritten after
each export, so an interrupted run keeps what finished).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MODELS, ROOT  # noqa: E402  (sets up the repository root, cwd and quiet mode first)

DIGITS = MODELS["digits CNN"]
TINY = "tiny_transformer"
ZOO_MODELS = ("ppocr_v4_rec", "ppocr_v4_det", "nudenet_320n", "silero_vad_16k")
DEFAULT_MODELS = ("digits", TINY, *ZOO_MODELS)
VARIANTS = {  # name -> edgeport export flags of the recipe
    "int8": ["--quantize", "int8"],
    "int8-percentile": ["--quantize", "int8", "--calibration", "percentile"],
    "int8-mse": ["--quantize", "int8", "--calibration", "mse"],
    "int8-auto": ["--quantize", "int8", "--calibration", "auto"],
    "int8-equalize": ["--quantize", "int8", "--equalize"],
    "int8-per-tensor": ["--quantize", "int8", "--per-tensor"],
    "int8-per-tensor-equalize": ["--quantize", "int8", "--per-tensor", "--equalize"],
    "int8-smoothquant": ["--quantize", "int8", "--smoothquant", "0.5"],
    "int8-bias-correction": ["--quantize", "int8", "--bias-correction"],
    "int8-fallback": ["--quantize", "int8", "--fallback", "auto", "--min-cosine", "0.99"],
    "weight-only-int4": ["--quantize", "weight-only-int4"],
    "weight-only-int4-int4-rows": ["--quantize", "weight-only-int4", "--embedding-bits", "4"],
    "dynamic-int8": ["--quantize", "dynamic-int8"],
}
DEFAULT_TARGETS = ("onnx", "android", "cortex-m7")
C_MODELS = {"digits"}  # models exported to the C library targets
LATENCY_FLAGS = ["--runs", "2", "--warmup", "0", "--threads", "1"]  # tiny: latency is not a figure here
ZOO_SAMPLES, ZOO_SAMPLES_MAX = 16, 128
TINY_CALIB, TINY_EVAL = 64, 256
TIMEOUT_S = 1800.0


# ---------------------------------------------------------------- models and their data

def prepare_model(name: str, folder: Path, zoo_samples: int) -> dict:
    """{source, calib, eval, labeled, about} of a model, its data written under `folder`, or
    {missing: why} when it cannot be used here."""
    if name == "digits":
        return {"source": DIGITS["source"], "calib": DIGITS["calib"], "eval": DIGITS["eval"], "labeled": True,
                "about": "digits CNN sample; calib 200 / eval 359 labeled (samples/digits)"}
    if name == TINY:
        from benchmarks.zoo import tiny_transformer

        started, cached = time.perf_counter(), tiny_transformer.cache_path().is_file()
        _, facts = tiny_transformer.trained_state()  # trains now (or loads the cache), before the exports
        calib, evaluation = tiny_transformer.write_data(folder / TINY, TINY_CALIB, TINY_EVAL)
        how = "loaded from cache" if cached else "trained now"
        return {"source": f"{tiny_transformer.__name__}:build", "calib": str(calib), "eval": str(evaluation),
                "labeled": True, "training": facts,
                "about": (f"{how} (seed {facts['seed']}: {facts['epochs']} epoch(s), {facts['seconds']} s, held-out "
                          f"accuracy {100 * facts['held_out_accuracy']:.1f}%; ready in "
                          f"{time.perf_counter() - started:.1f} s, cache "
                          f"{tiny_transformer.cache_path().name} in the system temporary folder); calib {TINY_CALIB} / eval {TINY_EVAL} "
                          "labeled")}
    from benchmarks import zoo

    entry = zoo.get(name)  # KeyError lists the known names
    if entry.missing():
        return {"missing": entry.missing()}
    for part in ("calib", "eval"):
        (folder / name / part).mkdir(parents=True, exist_ok=True)
    calib = entry.write_data(folder / name / "calib", zoo_samples, seed=zoo.SEED)
    evaluation = entry.write_data(folder / name / "eval", zoo_samples, seed=zoo.SEED + 1)
    return {"source": entry.source, "calib": str(calib), "eval": str(evaluation), "labeled": False,
            "about": (f"zoo '{entry.family}' entry ({entry.package}); calib {zoo_samples} / eval {zoo_samples} "
                      "unlabeled (zoo data, seeds 0 / 1)")}


def targets_for(model: str, targets: list[str]) -> list[str]:
    from edgeport.targets import resolve_targets

    formats = {t.name: t.format for t in resolve_targets(targets)}
    return [t for t in targets if formats[t] != "c" or model in C_MODELS]


# ---------------------------------------------------------------- one export (all targets of a variant)

def edgeport_command(spec: dict, variant: str, targets: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "edgeport", "export", spec["source"], "--target", ",".join(targets),
            *VARIANTS[variant], "--calib", spec["calib"], "--eval", spec["eval"], "--out", str(out),
            *LATENCY_FLAGS, "--keep-going", "--allow-mismatch", "--json", "--quiet"]


def run_export(command: list[str], timeout: float) -> tuple[int | None, str, str, float]:
    """(exit code or None on timeout, stdout, stderr, seconds). The export runs in its own session
    so a timeout or Ctrl-C stops it and whatever it started (by its process group id)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return process.returncode, stdout, stderr, time.perf_counter() - started
    except subprocess.TimeoutExpired:
        _stop(process)
        return None, "", f"no result after {timeout:.0f} s", time.perf_counter() - started
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)  # the group this export leads (start_new_session)
        except ProcessLookupError:
            return
        try:
            process.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def export_cells(model: str, spec: dict, variant: str, targets: list[str], timeout: float) -> list[dict]:
    """One export of `model` with `variant` to `targets`; one cell per target."""
    base = {"model": model, "variant": variant}
    folder = Path(tempfile.mkdtemp(prefix="numerics-"))
    out = folder / "out"
    command = edgeport_command(spec, variant, targets, out)
    try:
        code, stdout, stderr, seconds = run_export(command, timeout)
        fallback = _fallback_record(out) if variant == "int8-fallback" else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    shown = " ".join(shlex.quote(a) for a in [".venv/bin/edgeport", *command[3:]]).replace(str(out), "OUT")
    common = {"exit_code": code, "seconds": round(seconds, 1), "command": shown}
    report = _parse(stdout)
    if report is None:  # the whole export stopped before any target (or timed out / crashed)
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()] or [f"exit {code}, no output"]
        status = "failed" if code is None else "refused" if code == 2 else "failed"
        message = lines[-1].removeprefix("edgeport: error: ").removeprefix("edgeport: ")
        if code is None:
            message = f"timed out: {message}"
        cells = [{**base, "target": t, "status": status, "message": message[:400], **common} for t in targets]
        if code == 2 and NOTHING_EXPORTABLE in message:
            for cell in cells:  # --keep-going with every target refused drops their reasons: ask each alone
                cell["message"] = _refusal(spec, variant, cell["target"], timeout) or message
        return cells
    by_target = {t["target"]: t for t in report["targets"]}
    budgets = {(b.get("budget"), b.get("target")): b for b in report.get("budgets", [])}
    warnings = [b for b in report.get("self_checks", []) if b.get("warning") or not b.get("ok", True)]
    cells = []
    for target in targets:
        cell = {**base, "target": target, **common}
        entry = by_target.get(target)
        if entry is None:
            cell.update(status="failed", message="not in the report")
        elif entry["status"] == "failed":
            cell.update(status="refused" if entry.get("failure") == "bad-input" else "failed",
                        message=_first_line(entry.get("reason", "")))
        elif entry["status"] != "exported":
            cell.update(status=entry["status"], message=_first_line(entry.get("reason", "")))
        else:
            cell.update(_measurements(entry, spec["labeled"]))
            cell["self_check_warnings"] = [w["message"] for w in warnings if w.get("target") == target]
            goal = budgets.get(("min_cosine", target))
            if goal is not None:
                cell["min_cosine_budget"] = {"limit": goal.get("limit"), "measured": goal.get("measured"),
                                             "ok": goal.get("ok")}
        if fallback is not None and cell.get("status") == "exported":
            cell["fallback"] = fallback
        cells.append(cell)
    return cells


NOTHING_EXPORTABLE = "no target can be exported here"


def _refusal(spec: dict, variant: str, target: str, timeout: float) -> str | None:
    """Why `target` refuses the recipe: the same export without --keep-going, which refuses before
    any work with the target's own reason (None if it did not refuse)."""
    folder = Path(tempfile.mkdtemp(prefix="numerics-"))
    try:
        command = [a for a in edgeport_command(spec, variant, [target], folder / "out") if a != "--keep-going"]
        code, _, stderr, _ = run_export(command, timeout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1].removeprefix("edgeport: error: ")[:400] if code == 2 and lines else None


def _parse(stdout: str) -> dict | None:
    text = stdout.strip()
    start = text.find("{")
    if start < 0:
        return None
    try:
        report = json.loads(text[start:])
    except json.JSONDecodeError:
        return None
    return report if isinstance(report, dict) and "targets" in report else None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return (lines[0] if lines else "no reason given")[:400]


def _measurements(entry: dict, labeled: bool) -> dict:
    checks = entry.get("checks", {})

    def measured(name):
        check = checks.get(name, {})
        return check if check.get("status") == "measured" else {}
    size, parity, accuracy = measured("size"), measured("parity"), measured("accuracy")
    values = {"status": "exported", "recipe": entry.get("recipe"), "size_bytes": size.get("size_bytes"),
              "float_size_bytes": size.get("float_size_bytes"), "alpha": size.get("alpha"),
              "size_what": size.get("what"), "cosine": parity.get("cosine"), "sqnr_db": parity.get("sqnr_db"),
              "max_abs_err": parity.get("max_abs_err"), "top1_agreement": parity.get("top1_agreement"),
              "parity_samples": parity.get("samples"), "outputs": parity.get("outputs"),
              "accuracy": accuracy.get("accuracy"), "float_accuracy": accuracy.get("float_accuracy"),
              "accuracy_drop_points": accuracy.get("accuracy_drop_points"),
              "not_run": {name: c.get("reason") for name, c in checks.items()
                          if c.get("status") != "measured" and name in ("size", "parity", "accuracy")
                          and (labeled or name != "accuracy")}}
    return {k: v for k, v in values.items() if v is not None}


def _fallback_record(out: Path) -> dict | None:
    """What `--fallback auto` did, from `<out>/quant_params.json` (`fallback`: the moved layers and
    the share of the quantizable weights they hold)."""
    path = out / "quant_params.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text()).get("fallback")
    if not record:
        return None
    return {"met": record.get("met"), "stopped": record.get("stopped"), "goals": record.get("goals"),
            "float_weight_share": record.get("float_weight_share"),
            "moved": [{k: m.get(k) for k in ("node", "op", "layer", "to", "why")} for m in record.get("moved", [])],
            "steps": len(record.get("steps", [])), "measured_on": record.get("measured_on")}


# ---------------------------------------------------------------- printing

COLUMNS = (("model", 17, "<"), ("variant", 26, "<"), ("target", 10, "<"), ("size KB", 9, ">"), ("α", 6, ">"),
           ("cosine", 9, ">"), ("SQNR dB", 8, ">"), ("acc %", 7, ">"), ("drop", 6, ">"))


def header_line() -> str:
    return "".join(f"{name:{align}{width}}" for name, width, align in COLUMNS) + "  fallback / notes"


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def row(cell: dict) -> str:
    lead = [cell["model"], cell["variant"], cell["target"]]
    if cell["status"] != "exported":
        return ("".join(f"{v:<{w}}" for v, (_, w, _) in zip(lead, COLUMNS))
                + f"{cell['status'].upper()}: {cell.get('message', '')}")
    size, accuracy, drop = cell.get("size_bytes"), cell.get("accuracy"), cell.get("accuracy_drop_points")
    values = lead + [
        _num(None if size is None else size / 1000, ".1f"), _num(cell.get("alpha"), ".2f"),
        _num(cell.get("cosine"), ".5f"), _num(cell.get("sqnr_db"), ".1f"),
        _num(None if accuracy is None else 100 * accuracy, ".2f"),
        _num(None if drop is None else round(drop, 2) + 0.0, ".2f")]  # + 0.0: no "-0.00"
    text = "".join(f"{v:{a}{w}}" for v, (_, w, a) in zip(values, COLUMNS))
    return (text + "  " + "; ".join(_notes(cell))).rstrip()


def _notes(cell: dict) -> list[str]:
    notes = []
    fallback = cell.get("fallback")
    if fallback:
        final = {m["node"]: (m.get("layer") or m["node"], m.get("to", "float")) for m in fallback["moved"]}
        moved = [layer for layer, _ in final.values()]  # module path where known
        to_int16 = sum(to == "int16" for _, to in final.values())
        share = fallback.get("float_weight_share") or 0.0
        listed = f" ({', '.join(moved[:4])}{' ...' if len(moved) > 4 else ''})" if moved else ""
        verdict = "met" if fallback.get("met") else f"NOT met ({fallback.get('stopped') or '?'})"
        notes.append(f"{len(moved)} layer(s) moved{listed}: {to_int16} to int16 activations, "
                     f"{len(moved) - to_int16} to float, {100 * share:.1f}% of weights above 8 bits; "
                     f"goal {verdict} on calib")
    elif cell["variant"] == "int8-fallback":
        notes.append("no fallback record in quant_params.json")
    budget = cell.get("min_cosine_budget")
    if budget is not None and not budget.get("ok"):
        notes.append(f"min-cosine {budget['limit']} breached on eval")
    if "size_what" in cell:
        notes.append("size = C library flash (no float baseline)")
    for name, reason in cell.get("not_run", {}).items():
        notes.append(f"{name} not measured: {_first_line(reason)[:120]}")
    if cell.get("self_check_warnings"):
        notes.append("self-check warning (parity below the recipe's floor)")
    return notes


def print_header(models: dict[str, dict], targets: list[str], variants: list[str]) -> None:
    import edgeport

    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    print(f"edgeport numerics benchmark, {time.strftime('%Y-%m-%d %H:%M')}: "
          + " ".join(shlex.quote(a) for a in [python, *sys.argv]))
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU(s), Python "
          f"{platform.python_version()}, edgeport {edgeport.__version__}. Latency is not measured here: each "
          f"export times only {' '.join(LATENCY_FLAGS)} (to stay cheap) and those figures are dropped.")
    print("variants: " + ", ".join(f"{v} ({' '.join(VARIANTS[v])})" for v in variants))
    print(f"targets: {', '.join(targets)}; C library targets for {', '.join(sorted(C_MODELS))} only; "
          "one export per model and variant (--keep-going)")
    for name, spec in models.items():
        print(f"  {name}: " + (f"NOT AVAILABLE: {spec['missing']}" if "missing" in spec else spec["about"]))
    print("columns: size in KB (1000 B); α = float size / size; cosine and SQNR of the worst output vs the float "
          "model on the eval data; accuracy and its drop in points (float - artifact; labeled eval data only); "
          "fallback: layers moved to int16 activations / to float, share of the quantizable weights above 8 bits")
    print()
    line = header_line()
    print(line)
    print("-" * len(line), flush=True)


# ---------------------------------------------------------------- main

def _names(text: str, known=None, what: str = "") -> list[str]:
    names = [w.strip() for w in text.split(",") if w.strip()]
    if known is not None:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"numerics.py: unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated: digits, {TINY}, or zoo entry names (default: %(default)s)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated recipe variants (default: %(default)s)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="comma-separated edgeport targets; C library targets run for digits only "
                             "(default: %(default)s)")
    parser.add_argument("--zoo-samples", type=int, default=ZOO_SAMPLES,
                        help=f"calibration (and eval) samples of the zoo models, 1 to {ZOO_SAMPLES_MAX} "
                             "(default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help="seconds per export (one model and variant, all its targets; default: %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write every cell here (rewritten after each export)")
    args = parser.parse_args(argv)
    if not 1 <= args.zoo_samples <= ZOO_SAMPLES_MAX:
        parser.error(f"--zoo-samples must be 1 to {ZOO_SAMPLES_MAX}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from edgeport.errors import InputError
    from edgeport.targets import resolve_targets

    variants = _names(args.variants, VARIANTS, "variant(s)")
    targets = _names(args.targets)
    try:
        targets = [t.name for t in resolve_targets(targets)]
    except InputError as exc:
        raise SystemExit(f"numerics.py: {exc}") from None
    folder = Path(tempfile.mkdtemp(prefix="numerics-data-"))
    cells: list[dict] = []
    meta = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": {"system": platform.system(), "machine": platform.machine(), "cpus": os.cpu_count(),
                        "python": platform.python_version()},
            "latency": f"not measured (exports run {' '.join(LATENCY_FLAGS)})", "variants": {v: VARIANTS[v] for v in
                                                                                            variants}}
    try:
        try:
            models = {name: prepare_model(name, folder, args.zoo_samples) for name in _names(args.models)}
        except KeyError as exc:  # an unknown model name: the zoo's message lists the known ones
            raise SystemExit(f"numerics.py: {exc.args[0]} (or digits, {TINY})") from None
        meta["models"] = {name: {k: v for k, v in spec.items() if k not in ("calib", "eval") or "missing" in spec}
                          for name, spec in models.items()}
        print_header(models, targets, variants)
        for name, spec in models.items():
            mine = targets_for(name, targets)
            for variant in variants:
                if "missing" in spec:
                    new = [{"model": name, "variant": variant, "target": t, "status": "missing",
                            "message": spec["missing"]} for t in mine]
                elif not mine:
                    continue
                else:
                    new = export_cells(name, spec, variant, mine, args.timeout)
                for cell in new:
                    print(row(cell), flush=True)
                cells += new
                if new and "seconds" in new[0]:
                    print(f"  [{name} {variant}: {len(mine)} target(s), {new[0]['seconds']:.0f} s, exit "
                          f"{new[0]['exit_code']}]", file=sys.stderr, flush=True)
                if args.json:
                    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json).write_text(json.dumps({**meta, "cells": cells}, indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    counts = {s: sum(c["status"] == s for c in cells) for s in ("exported", "refused", "failed", "missing")}
    print(f"\n{len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + (f"; written to {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
