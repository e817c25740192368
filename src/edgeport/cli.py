"""Command line: parse -> pipeline function -> print -> exit code (see `edgeport.guard`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from edgeport.errors import EXIT_USAGE, InputError, first_line
from edgeport.schemes import SCHEMES
from edgeport.targets.options import OPTION_SECTIONS

EPILOG = """\
examples:
  edgeport export samples.digits.model:build --target onnx --quantize int8 \\
      --calib samples/digits/calib.npz --eval samples/digits/eval.npz --out out/digits
  edgeport export model.onnx --target onnx,onnx-mobile --quantize fp16 --max-size 2MB
  edgeport export --config edgeport.toml
  edgeport check model.onnx --target onnx --eval data.npz --reference float.onnx
  edgeport targets

exit codes: 0 ok, 1 a budget was breached (or a self-check failed), 2 bad input or usage,
3 an internal error (a bug; the log file is named), 130 / 143 stopped by SIGINT / SIGTERM.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr with exit code 2."""

    def error(self, message: str):
        raise InputError(message)


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 1,3,224,224") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 1,3,224,224")
    return dims


def _add_budgets(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budgets (a breach exits 1, naming the budget, the value and the limit; so does a "
                             "failed self-check)")
    g.add_argument("--max-size", metavar="SIZE", help="artifact size limit, e.g. 250000, 250KB, 1.5MiB")
    g.add_argument("--max-latency", metavar="MS", help="p50 latency limit at batch 1, in ms (Cortex-M: the "
                                                        "estimate at the board clock)")
    g.add_argument("--min-agreement", metavar="FRACTION", help="least top-1 agreement with the float model, e.g. 0.99 or 99%%")
    g.add_argument("--min-cosine", metavar="COSINE", help="least cosine similarity with the float model over all "
                                                          "values of the worst output, e.g. 0.99 (embeddings, "
                                                          "detectors, regressors)")
    g.add_argument("--min-sqnr", metavar="DB", help="least SQNR of the worst output against the float model, in dB, "
                                                   "e.g. 30")
    g.add_argument("--max-accuracy-drop", metavar="POINTS", help="most accuracy lost vs float, in points (needs --eval labels)")
    g.add_argument("--max-flash", metavar="SIZE", help="Cortex-M: flash limit for the C library (weights + code)")
    g.add_argument("--max-ram", metavar="SIZE", help="Cortex-M: RAM limit for the C library (arena + static data)")
    g.add_argument("--allow-mismatch", dest="allow_mismatch", action="store_true",
                   help="report a failed self-check (C library not bit-exact with LiteRT, parity far below what "
                        "the recipe gives) as a warning instead of failing with exit 1")


def _add_check_settings(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checks")
    g.add_argument("--runs", type=int, help="timed latency runs (default 100)")
    g.add_argument("--warmup", type=int, help="untimed warm-up runs (default 10)")
    g.add_argument("--threads", type=int, help="runtime threads, fixed and reported (default 1)")
    g.add_argument("--layers", action="store_true",
                   help="per-layer numerics: SQNR and cosine of every layer's output against the float model, "
                        "and the layers adding 80%% of the noise, where the error enters (ONNX, LiteRT, Core ML and C library artifacts)")
    g.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeport", description="Turn a trained model into a checked on-device artifact.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="edgeport 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ex = sub.add_parser("export", help="export a model to targets, check each artifact, apply budgets",
                        description="Export SOURCE with one recipe to every --target, run each artifact in its "
                                    "runtime, write <out>/report.json and print a table.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("source", nargs="?", help="package.module:factory, model.pt2 or model.onnx")
    ex.add_argument("--config", metavar="TOML", help="read settings from an edgeport.toml (flags override it)")
    ex.add_argument("--target", "--targets", dest="targets", metavar="NAMES",
                    help="comma-separated targets ('edgeport targets' lists them; 'browser' = browser-tfjs,browser-ort), "
                         "or 'all' for every target usable here (default onnx)")
    ex.add_argument("--out", metavar="DIR", help="output folder (default out): a new or empty folder, or one an "
                                                 "earlier export wrote (edgeport replaces only its own files)")
    ex.add_argument("--keep-going", dest="keep_going", action="store_true",
                    help="when a target fails, export and check the others, list the failures, exit 2 "
                         "(default: the run is all-or-nothing)")
    ex.add_argument("--force", action="store_true",
                    help="also write into an --out folder holding other files (they are kept, never replaced)")
    ex.add_argument("--input-shape", dest="input_shape", type=_shape, action="append", metavar="DIMS",
                    help="input shape such as 1,1,8,8 (repeat per input; default: from the data)")
    ex.add_argument("--input-dtype", dest="input_dtype", action="append", metavar="[NAME=]DTYPE",
                    help="input dtype: one for every input (int64), or per input (input_ids=int64; repeatable); "
                         "default: the data's arrays' types, else float32")
    rg = ex.add_argument_group("recipe (decided once, honored by every target)")
    rg.add_argument("--quantize", "--recipe", dest="quantize", metavar="SCHEME",
                    help=" | ".join(SCHEMES.names()) + " (default none): " +
                         "; ".join(f"{cls.name}: {cls.summary}" for cls in SCHEMES))
    rg.add_argument("--per-tensor", dest="per_channel", action="store_const", const=False,
                    help="one weight scale per tensor instead of per output channel")
    rg.add_argument("--calibration", metavar="METHOD", help="minmax | percentile | mse | auto (the one whose "
                    "int8 model measures best on the calibration data; default minmax)")
    rg.add_argument("--percentile", type=float, metavar="P", help="mass kept by percentile calibration (default 99.99)")
    rg.add_argument("--block-size", type=int, metavar="N", help="weight-only-int4: weights per scale along a linear "
                    "layer's input (32, 64, 128, 256; 0 = per output channel; default 32)")
    rg.add_argument("--embedding-bits", dest="embedding_bits", type=int, metavar="BITS",
                    help="embedding tables' bits, one scale per row: 8 (default) or 4 (with weight-only-int4: "
                         "half the size again, and less accurate: measure it)")
    rg.add_argument("--keep-float", dest="keep_float", action="append", metavar="NAME",
                    help="keep a layer (module path, node name or op type) in float; repeatable")
    rg.add_argument("--override", dest="override", action="append", metavar="LAYER=PRECISION",
                    help="per-layer precision over the recipe: float | int8 | int16; LAYER is a module path "
                         "(features.3), an ONNX node name, or op_type:Conv for every node of an op type; "
                         "the most specific wins (global < op type < layer); repeatable")
    rg.add_argument("--fallback", metavar="MODE",
                    help="auto: move the layers adding the most quantization error (measured) to float, one at a "
                         "time, until --min-cosine / --min-sqnr / --min-agreement hold on the calibration data "
                         "(at most 10%% of the weights); none (default)")
    rg.add_argument("--equalize", action="store_const", const=True,
                    help="cross-layer equalization before quantizing: rescale consecutive layers' channels (same "
                         "float model) so per-tensor and depthwise weights lose less to int8")
    rg.add_argument("--smoothquant", type=float, nargs="?", const=0.5, metavar="ALPHA",
                    help="SmoothQuant for transformer linears: scale activation outlier channels down and the "
                         "weights up by max|x|^ALPHA / max|w|^(1-ALPHA) (default ALPHA 0.5); needs --calib")
    rg.add_argument("--bias-correction", dest="bias_correction", action="store_const", const=True,
                    help="correct each quantized layer's bias for the mean shift its rounded weights cause on "
                         "the calibration data")
    rg.add_argument("--palettize", type=int, metavar="BITS",
                    help="k-means weight sharing: 2^BITS shared values per layer (1, 2, 4, 6, 8)")
    rg.add_argument("--prune", type=float, metavar="FRACTION",
                    help="zero this fraction of each layer's weights by magnitude, e.g. 0.5")
    rg.add_argument("--prune-channels", dest="prune_channels", type=float, metavar="FRACTION",
                    help="remove this fraction of each layer's channels (structured: smaller and faster "
                         "on every target), e.g. 0.5; PyTorch sources")
    rg.add_argument("--calib", metavar="DATA", help=".npy, .npz, folder of them, or module:function")
    rg.add_argument("--calib-samples", dest="calib_samples", type=int, metavar="N", help="use at most N samples (default 1000)")
    ex.add_argument("--eval", metavar="DATA", help="evaluation inputs (+ labels y for accuracy)")
    _add_target_options(ex)
    _add_budgets(ex)
    _add_check_settings(ex)

    ck = sub.add_parser("check", help="check an existing artifact in its runtime (no export)",
                        description="Run the checks of TARGET on MODEL and write <model>.report.json next to it.")
    ck.add_argument("model", help="artifact file, e.g. model.onnx or model.ort")
    ck.add_argument("--target", required=True, help="target whose runtime runs the checks")
    ck.add_argument("--eval", metavar="DATA", help="inputs (+ labels) for parity and accuracy")
    ck.add_argument("--reference", metavar="ONNX", help="float .onnx model to compare with")
    ck.add_argument("--report", metavar="FILE", help="JSON report path (default <model>.report.json in the "
                                                     "current folder)")
    ck.add_argument("--force", action="store_true", help="replace a --report file that is not an edgeport report")
    _add_budgets(ck)
    _add_check_settings(ck)

    tg = sub.add_parser("targets", help="list targets and whether they can be used here")
    tg.add_argument("--json", action="store_true", help="machine-readable output")
    _add_sweep_parser(sub)
    return parser


SWEEP_EPILOG = """\
example:
  edgeport sweep samples.digits.model:build --targets onnx,android,cortex-m4 \\
      --recipes fp32,fp16,dynamic-int8,int8 --calib samples/digits/calib.npz \\
      --eval samples/digits/eval.npz --out out/sweep --workers 2

writes <out>/<recipe>/ (each recipe's export and report.json), <out>/sweep.json, <out>/report.html
and <out>/plots/*.png. A pair the target refuses is recorded as refused, a failing one as failed
with its error; the sweep goes on.
exit codes: 0 the sweep ran, 1 no configuration could be exported and checked, 2 bad input or usage.
"""


def _variant(text: str) -> tuple[str, str, str]:
    """`name=module:factory[@recipe]` -> (name, source, recipe)."""
    name, eq, rest = text.partition("=")
    source, _, recipe = rest.partition("@")
    if not eq or not name.strip() or not source.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=SOURCE[@RECIPE] "
                                         "(e.g. qat=samples.digits_lowbit.model:qat_int8)")
    return name.strip(), source.strip(), recipe.strip() or "int8"


def _add_sweep_parser(sub) -> None:
    from edgeport.sweep.grid import DEFAULT_RECIPES, RECIPES

    sw = sub.add_parser("sweep", help="export a grid of recipes x targets, compare them on Pareto frontiers",
                        description="Export SOURCE with every recipe to every target, check each artifact, and "
                                    "write the Pareto frontiers of quality vs size and vs latency per target "
                                    "as an HTML report with plots and JSON.",
                        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("source", help="package.module:factory, model.pt2 or model.onnx")
    sw.add_argument("--targets", "--target", dest="targets", default="onnx", metavar="NAMES",
                    help="comma-separated targets (default onnx)")
    sw.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), metavar="NAMES",
                    help=f"comma-separated: {', '.join(RECIPES.names())} (default {','.join(DEFAULT_RECIPES)})")
    sw.add_argument("--variant", dest="variants", action="append", type=_variant, metavar="NAME=SOURCE[@RECIPE]",
                    help="a trained variant of the model as one more row, e.g. "
                         "qat=samples.digits_lowbit.model:qat_int8 (a QAT or binary model; recipe default int8); "
                         "repeatable")
    sw.add_argument("--calib", metavar="DATA", help="calibration data (needed by int8, int8-per-tensor, int16x8)")
    sw.add_argument("--eval", metavar="DATA", help="evaluation data; with labels y the quality is accuracy, "
                                                   "else top-1 agreement with the float model")
    sw.add_argument("--out", default="out/sweep", metavar="DIR", help="output folder (default out/sweep): new, empty "
                                                                     "or an earlier sweep's")
    sw.add_argument("--force", action="store_true", help="also write into an --out folder holding other files")
    sw.add_argument("--input-shape", dest="input_shape", type=_shape, action="append", metavar="DIMS",
                    help="input shape such as 1,1,8,8 (repeat per input; default: from the data)")
    sw.add_argument("--workers", type=int, default=2, metavar="N",
                    help="recipes exported at the same time, each in its own process (default 2; 1 = in this process)")
    sw.add_argument("--executor", default="local", metavar="NAME",
                    help="local (worker processes here) or ray (Ray tasks; RAY_ADDRESS names a cluster)")
    _add_check_settings(sw)


def _add_target_options(parser) -> None:
    """One flag group per options section, from the options dataclasses' field metadata."""
    from dataclasses import fields

    for section, options_type in OPTION_SECTIONS.items():
        group = parser.add_argument_group(f"{section} target options ([{section}] in edgeport.toml)")
        for f in fields(options_type):
            group.add_argument(f.metadata["flag"], dest=f"{section}_{f.name}", metavar=f.name.upper(),
                               help=f.metadata["help"])


def _target_options(args, cfg: dict) -> dict:
    """{section: {key: value}}: the config file's sections with the flags over them."""
    from dataclasses import fields

    options = {}
    for section, options_type in OPTION_SECTIONS.items():
        flags = {f.name: getattr(args, f"{section}_{f.name}") for f in fields(options_type)}
        values = {**cfg[section], **{k: v for k, v in flags.items() if v is not None}}
        if values:
            options[section] = values
    return options


def _overrides(entries: list[str] | None, file_overrides: dict | None) -> dict | None:
    """`--override KEY=PRECISION` flags layered over the config file's [recipe.op_type] / [recipe.layer]."""
    if not entries:
        return file_overrides
    levels = {level: dict((file_overrides or {}).get(level, {})) for level in ("op_type", "layer")}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--override '{entry}': expected LAYER=PRECISION (e.g. features.3=float, op_type:Conv=int16)")
        level, name = ("op_type", key[len("op_type:"):]) if key.startswith("op_type:") else ("layer", key)
        levels[level][name] = value
    return levels


def _input_dtype(flags: list[str] | None, from_file):
    """`--input-dtype int64` (every input) or `--input-dtype input_ids=int64 ...` (by name), over
    the config file's `input_dtype` (a string or a table)."""
    if not flags:
        return from_file
    named = [f for f in flags if "=" in f]
    if not named:
        if len(flags) > 1:
            raise InputError("--input-dtype: give one dtype for every input, or NAME=DTYPE per input")
        return flags[0]
    if len(named) != len(flags):
        raise InputError("--input-dtype: do not mix DTYPE and NAME=DTYPE")
    dtypes = dict(from_file) if isinstance(from_file, dict) else {}
    for entry in named:
        name, _, dtype = entry.partition("=")
        if not name or not dtype:
            raise InputError(f"--input-dtype '{entry}': expected NAME=DTYPE, e.g. input_ids=int64")
        dtypes[name] = dtype
    return dtypes


def _settings(args, file_settings: dict):
    from edgeport.checks import CheckSettings

    from edgeport.limits import MAX_RUNS, MAX_WARMUP, max_threads

    values = {**file_settings, **{k: getattr(args, k) for k in ("runs", "warmup", "threads") if getattr(args, k) is not None}}
    layers = bool(values.pop("layers", False)) or getattr(args, "layers", False)
    bounds = {"runs": (1, MAX_RUNS), "warmup": (0, MAX_WARMUP), "threads": (1, max_threads()),
              "batch_size": (1, 65536)}
    for key, value in values.items():
        if key not in bounds:
            raise InputError(f"[checks] {key}: unknown setting (known: {', '.join(bounds)})")
        low, high = bounds[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InputError(f"--{key} must be a whole number from {low} to {high:,}, not {value!r}"
                             + (f" (this machine has {os.cpu_count()} cores)" if key == "threads" else ""))
    return CheckSettings(**values, layers=layers)


def _budgets(args, file_budgets: dict) -> dict:
    flags = {k: getattr(args, k) for k in ("max_size", "max_latency", "min_agreement", "min_cosine", "min_sqnr",
                                           "max_accuracy_drop",
                                           "max_flash", "max_ram")}
    return {**file_budgets, **{k: v for k, v in flags.items() if v is not None}}


def cmd_export(args) -> int:
    from edgeport.config import SECTIONS, load_config
    from edgeport.pipeline import export
    from edgeport.recipe import Recipe

    cfg = load_config(args.config) if args.config else {s: {} for s in SECTIONS}
    exp = cfg["export"]
    pick = lambda key, default=None: getattr(args, key) if getattr(args, key) is not None else exp.get(key, default)
    source = args.source or exp.get("source")
    if not source:
        raise InputError("export: give a SOURCE (module:factory, .pt2 or .onnx) or --config with [export] source")
    recipe_values = {**cfg["recipe"], **{k: getattr(args, k) for k in ("quantize", "per_channel", "calibration",
                                                                       "percentile", "block_size", "embedding_bits", "keep_float", "calib_samples",
                                                                       "palettize", "prune", "prune_channels", "fallback",
                                                                       "equalize", "smoothquant", "bias_correction")
                                         if getattr(args, k) is not None}}
    overrides = _overrides(args.override, recipe_values.pop("overrides", None))
    if overrides:
        recipe_values["overrides"] = overrides
    try:
        recipe = Recipe(**recipe_values)
    except TypeError as exc:
        raise InputError(f"recipe: {exc}") from None
    shapes = args.input_shape or ([tuple(exp["input_shape"])] if exp.get("input_shape") else None)
    if shapes and isinstance(shapes[0][0], (list, tuple)):
        shapes = [tuple(s) for s in shapes[0]]
    options = _target_options(args, cfg)
    report = export(source, targets=pick("targets", "onnx"), recipe=recipe, out=pick("out", "out"),
                    calib=pick("calib"), eval=pick("eval"), input_shapes=shapes,
                    input_dtype=_input_dtype(args.input_dtype, exp.get("input_dtype")), budgets=_budgets(args, cfg["budgets"]),
                    settings=_settings(args, cfg["checks"]), target_options=options or None,
                    force=args.force, allow_mismatch=args.allow_mismatch,
                    keep_going=args.keep_going or bool(exp.get("keep_going")))
    return _print_report(report, args, f"{pick('out', 'out')}/report.json")


def cmd_check(args) -> int:
    from edgeport.pipeline import check

    report = check(args.model, args.target, eval=args.eval, reference=args.reference,
                   budgets=_budgets(args, {}), settings=_settings(args, {}), report_path=args.report,
                   force=args.force, allow_mismatch=args.allow_mismatch)
    return _print_report(report, args, report.path)


def _print_report(report, args, where: str) -> int:
    if args.json:
        print(report.to_json())
    else:
        print(report.table())
        print(f"report: {where}")
    failed = report.failed()
    if failed:  # --keep-going: one line for all of them (each is in the table and the JSON)
        print(f"edgeport: error: {len(failed)} of {len(report.targets)} target(s) failed: "
              + "; ".join(f"{t.target} ({first_line(t.reason, 120)})" for t in failed), file=sys.stderr)
    for budget in report.budgets + report.self_checks:
        if not budget.ok or budget.warning:
            print(f"edgeport: {'warning: ' if budget.warning else ''}{budget.message}", file=sys.stderr)
    return report.exit_code


def cmd_targets(args) -> int:
    from edgeport import plugins
    from edgeport.targets import GROUPS, TARGETS

    rows = [(t, plugins.missing(t)) for t in TARGETS]
    if args.json:
        print(json.dumps([{"name": t.name, "format": t.format, "runtime": t.runtime, "description": t.description,
                           "flash_bytes": t.flash_bytes, "ram_bytes": t.ram_bytes, "clock_hz": t.clock_hz,
                           "available": not why, "why_not": why} for t, why in rows], indent=2))
        return 0
    width = max(len(t.name) for t, _ in rows)
    for t, why in rows:
        status = "yes" if not why else "no: " + "; ".join(why)
        print(f"{t.name.ljust(width)}  {t.format:<9} {t.runtime:<14} {status}")
        print(f"{''.ljust(width)}  {t.description}")
    for group, members in GROUPS.items():
        print(f"\n'{group}' stands for {', '.join(members)}")
    return 0


def cmd_sweep(args) -> int:
    from edgeport.sweep import SweepSpec, run_sweep

    spec = SweepSpec(args.source, targets=args.targets, recipes=args.recipes, out=args.out, calib=args.calib,
                     eval=args.eval, input_shapes=tuple(args.input_shape) if args.input_shape else None,
                     settings=_settings(args, {}), workers=args.workers, executor=args.executor,
                     variants=tuple(args.variants or ()), force=args.force)
    report = run_sweep(spec)
    print(report.to_json() if args.json else f"{report.table()}\nreport: {args.out}/report.html")
    if report.exit_code:
        print("edgeport: no configuration of the sweep could be exported and checked (see the report)",
              file=sys.stderr)
    return report.exit_code


COMMANDS = {"export": cmd_export, "check": cmd_check, "targets": cmd_targets, "sweep": cmd_sweep}


def main(argv: list[str] | None = None) -> int:
    """Every command runs inside the guard (`edgeport.guard`): exit 0 / 1 / 2 / 3 / 130 / 143,
    at most one line on stderr, never a traceback."""
    from edgeport.guard import guarded

    def run() -> int:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if getattr(args, "quiet", False):
            os.environ["EDGEPORT_QUIET"] = "1"
        return COMMANDS[args.command](args)

    return guarded(run)
