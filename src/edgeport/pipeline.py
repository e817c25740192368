"""The spine: source -> recipe -> exporters -> checks -> report -> budgets.

Everything is written into a work folder beside the output folder and moved into place only
when the whole run succeeded (`edgeport.output`), so a failed or stopped run leaves the output
folder as it was. Each step runs as a named `stage` (`edgeport.guard`): a signal stops the run
at the next step, and an internal error names the step.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from edgeport.budgets import BUDGET_KINDS, evaluate, parse_budgets, self_checks
from edgeport.checks import CheckContext, CheckSettings, References, run_checks
from edgeport.checks.numerics import cross_target_parity
from edgeport.data import check_lookup_ids, load_dataset, random_dataset, sample_specs
from edgeport.errors import EdgeportError, InputError, first_line
from edgeport.guard import stage
from edgeport.limits import check_tensor
from edgeport.output import REPORT_NAME, check_report_file, output_folder, write_report_file
from edgeport import plugins
from edgeport.exporters import Artifact, ExportJob
from edgeport import equalize
from edgeport.compression import compress_weights, prune_structure
from edgeport.quantizers import make_plan
from edgeport.recipe import Recipe
from edgeport.report import Report, TargetReport, environment
from edgeport.sources import load_source
from edgeport.plugins import resolve_targets
from edgeport.targets import TARGETS, Target

RANDOM_SAMPLES = 20  # inputs checked when a .tflite source comes without data
PARAMS_NAME = "quant_params.json"


def export(source: str, targets: str | list[str] = "onnx", recipe: Recipe | None = None,
           out: str | os.PathLike = "out", calib: str | None = None, eval: str | None = None,
           input_shapes: list[tuple[int, ...]] | None = None, input_dtype: str | dict[str, str] | None = None,
           budgets: dict | None = None, settings: CheckSettings | None = None,
           target_options: dict[str, dict] | None = None, force: bool = False,
           allow_mismatch: bool = False, keep_going: bool = False) -> Report:
    """Export `source` to each target with one recipe, check every artifact, apply budgets.

    Args:
        source: `package.module:factory`, a `.pt2` file or an `.onnx` file.
        targets: Target names (list or comma-separated); `all` = every target usable here.
        recipe: The recipe; default fp32.
        out: Output folder; gets `<target>/<model>.<ext>`, `quant_params.json`, `report.json`.
        calib: Calibration data (needed by `int8`); also parity inputs when `eval` is absent.
        eval: Evaluation data, with labels for accuracy.
        input_shapes: Input shapes for PyTorch sources (default: from the data, batch 1).
        input_dtype: Input dtype of PyTorch sources: one for all, or {input name: dtype}
            (default: from the data's arrays, else float32).
        budgets: {"max_size": "100KB", "max_latency": 5, "min_agreement": 0.99, "max_accuracy_drop": 0.5}.
        settings: Latency settings (runs, warm-up, threads).
        target_options: Per-target options, e.g. {"ios": {"deployment_target": "iOS17", "precision": "fp32"}}.
        force: Write into an `out` folder that holds files edgeport did not write (they are kept).
        allow_mismatch: A failed self-check (`edgeport.budgets.self_checks`) is a warning, not exit 1.
        keep_going: A target that fails (refused, or its converter or checks fail) is listed as
            failed with its one-line message and the others go on (`report.exit_code` is then 2,
            or 3 for an internal error); without it the run is all-or-nothing.

    Returns:
        The `Report`; `report.exit_code` is 1 when a budget is breached.

    Raises:
        InputError: bad input (nothing is written).
    """
    recipe = recipe or Recipe()
    settings = settings or CheckSettings()
    limits = parse_budgets(budgets or {})
    every = targets in ("all", ["all"])
    chosen, refused = _targets_for(targets, recipe, target_options or {}, source, keep_going)
    tflite_source = source.endswith(".tflite")
    if tflite_source and recipe != Recipe():
        raise InputError(f"{source}: an existing .tflite is exported with its own quantization; "
                         "recipe options (--quantize, --prune, --palettize, ...) apply to PyTorch and ONNX sources")
    _check_budgets_measurable(limits, calib or tflite_source, eval)
    if recipe.fallback == "auto":
        if not calib:
            raise InputError("--fallback auto tunes the plan on calibration data: give --calib")
        from edgeport.fallback import goals_from

        goals_from(limits)
    if (recipe.smoothquant is not None or recipe.bias_correction) and not calib:
        raise InputError(f"--{'smoothquant' if recipe.smoothquant is not None else 'bias-correction'} measures the "
                         "layers' inputs on calibration data: give --calib")
    _check_budgets_apply(limits, chosen)
    for shape in input_shapes or ():
        check_tensor("--input-shape", shape, input_dtype if isinstance(input_dtype, str) else "float32")
    output = output_folder(out, source, force)
    output.check_entries([t.name for t in chosen] + [REPORT_NAME, PARAMS_NAME])
    data_specs = None
    if not input_shapes and (calib or eval) and not source.endswith(".tflite"):
        with stage("reading the data"):  # named arrays give a model's input shapes (and PyTorch's dtypes)
            data_specs = sample_specs(calib or eval, "calibration data" if calib else "eval data")

    with stage(f"loading {source}"):
        model = load_source(source, input_shapes, input_dtype, data_specs)
    with stage("reading the data"):
        calib_data = load_dataset(calib, model.inputs, "calibration data") if calib else None
        eval_data = load_dataset(eval, model.inputs, "eval data") if eval else None
        for dataset in (calib_data, eval_data):
            check_lookup_ids(dataset, model)
    if tflite_source and not (calib_data or eval_data):
        eval_data = random_dataset(model.inputs, RANDOM_SAMPLES)  # checks compare on these
    original = model
    with stage("compression"):
        model, structure = prune_structure(model, recipe)
    with stage("equalization"):
        model, rewrites = equalize.rewrite(model, recipe, calib_data)
    with stage("compression"):
        uncompressed = model
        model, compression = compress_weights(model, recipe)
    if recipe.scheme.calibrated and recipe.calibration == "auto" and calib_data is not None:
        recipe, plan = _tuned(model, recipe, calib_data, compression, "calibration")
    else:
        with stage("calibration" if recipe.scheme.calibrated else "quantization planning"):
            plan = make_plan(model, recipe, calib_data)
    if recipe.bias_correction:
        with stage("bias correction"):
            model, rewrites["bias_correction"] = equalize.correct_biases(model, plan, calib_data)
            plan = make_plan(model, recipe, calib_data)
    if recipe.fallback == "auto":
        recipe, plan = _tuned(model, recipe, calib_data, compression, "fallback", plan, limits,
                              int16=_int16_everywhere(recipe, chosen))
    plan.rewrites = rewrites
    plan.notes[:0] = equalize.note(rewrites)
    plan.compression = compression
    plan.structure = structure
    job = ExportJob(model, recipe, plan, calib_data, target_options or {},
                    uncompressed if compression else None, original if structure else None)

    work = output.work_folder()
    try:
        float_path = None
        if model.onnx_bytes:  # the float baseline: the model as given (before structured pruning)
            float_path = work / ".float.onnx"
            float_path.write_bytes(original.onnx_bytes)
        refs = References(model, eval_data or calib_data, float_path, settings.batch_size)
        report = Report(model=model.name, source=model.source, recipe=recipe.to_dict(), environment=environment(),
                        notes=list(plan.notes))
        # every artifact first: a model a format cannot take fails before any runtime starts
        failed: dict[str, TargetReport] = {t.name: _failed(t, InputError(refused[t.name]))
                                           for t in TARGETS if t.name in refused and not every}
        artifacts = {}
        for t in chosen:
            with _keep_going(keep_going, t, failed, work), stage(f"export to {t.name}"):
                artifacts[t.name] = plugins.exporters().get(t.format).export(job, t, work / t.name)
        contexts = []
        for target in [t for t in chosen if t.name in artifacts]:
            artifact = artifacts[target.name]
            ctx = _context(artifact, target, refs, settings, plan)
            with _keep_going(keep_going, target, failed, work), stage(f"checks on {target.name}"):
                results = run_checks(ctx, plugins.checks())
                contexts.append(ctx)
                report.targets.append(TargetReport(
                    target.name, target.format, "exported", artifact=str(artifact.path.relative_to(work)),
                    recipe=artifact.recipe, notes=artifact.notes, checks=results))
        report.targets += [failed[t.name] for t in TARGETS if t.name in failed]
        with stage("cross-target comparison"):
            report.cross_target = cross_target_parity(contexts, plan)
        if every:
            report.targets += [TargetReport(t.name, t.format, "skipped", reason=refused.get(t.name) or
                                            "; ".join(plugins.missing(t))) for t in TARGETS
                               if t not in chosen and t.in_all]
        if plan.weights or plan.activations or plan.compression or plan.structure:
            (work / PARAMS_NAME).write_text(plan.to_json())
            report.quant_params = PARAMS_NAME
        report.budgets = evaluate(limits, report.measurements(), report.not_run_reasons(), report.formats())
        # lossy weight compression the user chose (palettes, pruning) sets its own error: the parity
        # floor is for broken numbers, so it applies to the quantization scheme alone
        lossy = recipe.palettize or recipe.prune or recipe.prune_channels
        report.self_checks = self_checks(report.measurements(), None if tflite_source or lossy else
                                         recipe.scheme.parity_floor, allow_mismatch)
        with stage("writing the output"):
            report.files = output.files_after(work)
            (work / REPORT_NAME).write_text(report.to_json())
            output.commit(work)
    finally:
        output.discard(work)
    return report


def check(model_path: str | os.PathLike, target: str, eval: str | None = None, reference: str | None = None,
          budgets: dict | None = None, settings: CheckSettings | None = None,
          report_path: str | os.PathLike | None = None, force: bool = False,
          allow_mismatch: bool = False) -> Report:
    """Run the checks on an existing artifact (no export) and write the JSON report.

    Args:
        model_path: The artifact (e.g. an `.onnx` or `.ort` file made elsewhere).
        target: Target whose runtime runs the checks.
        eval: Inputs (and labels) for parity and accuracy.
        reference: A float `.onnx` model to compare with (parity, α, δ).
        report_path: Where to write the JSON report (default `<model>.report.json` in the
            current folder: the model's own folder is often read-only or shared).
        force: Replace a `report_path` file that is not an edgeport report.
        allow_mismatch: A failed self-check is a warning, not exit 1.
    """
    settings = settings or CheckSettings()
    limits = parse_budgets(budgets or {})
    (chosen,) = resolve_targets([target])
    path = Path(model_path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if chosen.format == "c":
        raise InputError(f"{chosen.name}: a C library is checked when it is made: run 'edgeport export "
                         f"<model>.tflite --target {chosen.name}' (an existing int8 .tflite is a valid source)")
    if path.name == "model.json" or (path / "model.json").is_file():
        suffix_format = "tfjs"  # a TF.js graph model: its model.json or the folder holding it
    else:
        suffix_format = {".onnx": "onnx", ".ort": "ort", ".tflite": "tflite", ".mlpackage": "mlpackage"}.get(path.suffix)
    if suffix_format != chosen.format:
        raise InputError(f"{path}: a '{path.suffix or path.name}' file cannot be checked as target '{chosen.name}' "
                         f"(it expects {'a TF.js model.json' if chosen.format == 'tfjs' else '.' + chosen.format})")
    _check_budgets_measurable(limits, eval, eval, need_reference=reference is not None)
    destination = Path(report_path) if report_path else default_check_report(path)
    check_report_file(destination, force)
    if chosen.format == "onnx":
        from edgeport.onnx_file import check_standard_ops, read_onnx

        check_standard_ops(read_onnx(path))
    with stage(f"loading {path}"):
        ref_model = load_source(reference) if reference else None
        inputs = ref_model.inputs if ref_model else _session_inputs(chosen, path, settings)
    with stage("reading the data"):
        data = load_dataset(eval, inputs, "eval data") if eval else None
    # the reference is a float ONNX model: it is the size / speed baseline only where the target runs ONNX
    baseline = Path(reference) if reference and chosen.format in ("onnx", "ort") else None
    refs = References(ref_model, data, baseline, settings.batch_size)
    artifact = Artifact(chosen.name, chosen.format, path, "as given")
    report = Report(model=path.stem, source=str(path), recipe={"quantize": "as given"}, environment=environment())
    with stage(f"checks on {chosen.name}"):
        results = run_checks(_context(artifact, chosen, refs, settings), plugins.checks())
    report.targets.append(TargetReport(chosen.name, chosen.format, "exported", artifact=path.name,
                                       recipe="as given", checks=results))
    report.budgets = evaluate(limits, report.measurements(), report.not_run_reasons(), report.formats())
    report.self_checks = self_checks(report.measurements(), None, allow_mismatch)
    with stage("writing the report"):
        write_report_file(destination, report.to_json())
    report.path = str(destination)
    return report


def _int16_everywhere(recipe: Recipe, targets: list[Target]) -> bool:
    """Whether `--fallback auto` may move layers to int16 activations: an int8 recipe, and every
    target of the run writes per-layer int16 (the others take float layers only); a target that
    takes no moved layer at all (int8 kernels only) does not hold the others back."""
    exporters = plugins.exporters()
    return recipe.scheme.calibrated and recipe.scheme.activation_bits == 8 and \
        all(t.format in exporters and (exporters.get(t.format).mixed_precision or not exporters.get(t.format).float_layers)
            for t in targets)


def _tuned(model, recipe: Recipe, calib_data, compression, what: str, plan=None, limits: dict | None = None,
           int16: bool = False):
    """The recipe and plan tuned on the calibration data by measuring ONNX artifacts
    (`edgeport.fallback`): `--calibration auto` picks the method, `--fallback auto` moves layers."""
    from edgeport import fallback

    onnx_target = next(t for t in TARGETS if t.format == "onnx")

    def export_onnx(candidate: Recipe, candidate_plan, folder: Path) -> Path:
        candidate_plan.compression = compression
        job = ExportJob(model, candidate, candidate_plan, calib_data, {})
        return plugins.exporters().get("onnx").export(job, onnx_target, folder).path

    def plan_for(candidate: Recipe):
        return make_plan(model, candidate, calib_data)

    if what == "calibration":
        recipe, plan, _ = fallback.choose_calibration(model, recipe, calib_data, plan_for, export_onnx)
        return recipe, plan
    recipe, plan, result = fallback.tune(model, recipe, calib_data, fallback.goals_from(limits), plan_for, export_onnx,
                                         int16)
    plan.fallback = result.to_dict()
    plan.notes.append(result.note())
    return recipe, plan


def default_check_report(model_path: str | os.PathLike) -> Path:
    return Path(f"{Path(model_path).stem}.report.json")


def _targets_for(targets: str | list[str], recipe: Recipe, options: dict, source: str,
                 keep_going: bool = False) -> tuple[list[Target], dict[str, str]]:
    """The targets to export and those refused because they cannot honor the recipe (name ->
    why): with `all` they are skipped, with `keep_going` they fail alone; otherwise a named target
    that cannot is an InputError, raised before any work."""
    chosen = resolve_targets(targets)
    every = targets in ("all", ["all"])
    refused: dict[str, str] = {}
    for target in chosen:
        if target.format not in plugins.exporters():
            raise InputError(f"target '{target.name}' cannot be exported: {'; '.join(plugins.missing(target))}")
        try:
            exporter = plugins.exporters().get(target.format)
            exporter.check_source(source, target, recipe)
            exporter.check_request(recipe, options, target, source)
        except InputError as exc:
            if not (every or keep_going):
                raise
            refused[target.name] = str(exc)
    chosen = [t for t in chosen if t.name not in refused]
    if not chosen:
        raise InputError("no target can be exported here (see 'edgeport targets')")
    return chosen, refused


@contextlib.contextmanager
def _keep_going(keep_going: bool, target: Target, failed: dict[str, TargetReport], work: Path):
    """With `keep_going`, an error in this block fails `target` alone (recorded in `failed`, its
    half-written folder removed); without it the error ends the run."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - with keep_going every failure is the target's own
        if not keep_going:
            raise
        failed[target.name] = _failed(target, exc)
        shutil.rmtree(work / target.name, ignore_errors=True)


def _failed(target: Target, exc: Exception) -> TargetReport:
    if isinstance(exc, EdgeportError):
        return TargetReport(target.name, target.format, "failed", reason=first_line(exc), failure="bad-input")
    return TargetReport(target.name, target.format, "failed", failure="internal",
                        reason=f"internal error: {type(exc).__name__}: {first_line(exc)} (a bug in edgeport)")


def _context(artifact: Artifact, target: Target, refs: References, settings: CheckSettings,
             plan=None) -> CheckContext:
    """The checks' context, handed the target's runtime and the artifact format's exporter."""
    runtimes, exporters = plugins.runtimes(), plugins.exporters()
    return CheckContext(artifact, target, refs, settings, plan,
                        runtime=runtimes.get(target.runtime) if target.runtime in runtimes else None,
                        exporter=exporters.get(artifact.format) if artifact.format in exporters else None)


def _session_inputs(target: Target, path: Path, settings: CheckSettings):
    from edgeport import plugins

    return plugins.runtimes().get(target.runtime).load(str(path), settings.threads).inputs


def _check_budgets_measurable(limits: dict, calib, eval, need_reference: bool = True) -> None:
    """Refuse budgets that this run could never measure, before any work is done."""
    if "max_accuracy_drop" in limits and not eval:
        raise InputError("max_accuracy_drop needs labeled eval data (--eval)")
    for name in ("min_agreement", "min_cosine", "min_sqnr"):
        if name in limits and not (calib or eval):
            raise InputError(f"{name} needs input data (--calib or --eval)")
    compared = [n for n in ("min_agreement", "min_cosine", "min_sqnr", "max_accuracy_drop") if n in limits]
    if not need_reference and compared:
        raise InputError(f"{' and '.join(compared)} need{'s' if len(compared) == 1 else ''} a float reference "
                         "(--reference)")


def _check_budgets_apply(limits: dict, chosen: list[Target]) -> None:
    """Refuse a budget for one kind of device when no chosen target is of that kind (a flash
    budget on an Android export would otherwise pass without measuring anything)."""
    for name in limits:
        kind = BUDGET_KINDS[name]
        if kind.formats is not None and not any(t.format in kind.formats for t in chosen):
            raise InputError(f"{name} applies to Cortex-M targets only (e.g. --target cortex-m4); "
                             f"none of {', '.join(t.name for t in chosen)} is one")
