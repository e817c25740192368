"""The grid (recipes x targets) and its runner.

Each recipe is one job: one `edgeport.pipeline.export()` of all the targets that accept it, so the
model is converted once per recipe; jobs run in parallel through an executor. A (recipe, target)
pair the target's exporter refuses is recorded as refused before any work; an export that fails is
recorded with its error, and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeport.errors import InputError, MissingDependencyError
from edgeport.recipe import Recipe
from edgeport.registry import Registry
from edgeport.sweep.records import FAILED, REFUSED, Configuration

if TYPE_CHECKING:
    from edgeport.checks import CheckSettings
    from edgeport.sweep.report import SweepReport

# Sweep recipe name -> the recipe it exports with.
RECIPES: Registry[Recipe] = Registry("sweep recipe")
for _name, _recipe in (
        ("fp32", Recipe()), ("fp16", Recipe(quantize="fp16")), ("dynamic-int8", Recipe(quantize="dynamic-int8")),
        ("weight-only-int8", Recipe(quantize="weight-only-int8")),
        ("int8", Recipe(quantize="int8")), ("int8-per-tensor", Recipe(quantize="int8", per_channel=False)),
        ("int16x8", Recipe(quantize="int16x8")), ("pal4", Recipe(palettize=4)), ("pal2", Recipe(palettize=2)),
        ("prune50", Recipe(prune=0.5)), ("prune80", Recipe(prune=0.8)),
        ("channels50", Recipe(prune_channels=0.5)), ("int8-pal4", Recipe(quantize="int8", palettize=4)),
        ("int8-prune50", Recipe(quantize="int8", prune=0.5))):
    RECIPES.add(_name, _recipe)

DEFAULT_RECIPES = ("fp32", "fp16", "dynamic-int8", "int8")
TRACEBACK_LINES = 12


def _names(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    return tuple(dict.fromkeys(n.strip() for n in items if n.strip()))


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: every recipe exported to every target, checked, and compared.

    Attributes:
        source: `package.module:factory`, a `.pt2` or an `.onnx` file (as for `export`).
        targets: Target names (or a comma-separated string; groups such as `browser` and `all` work).
        recipes: Sweep recipe names from `RECIPES` (or a comma-separated string).
        out: Output folder: `<recipe>/` per recipe, `sweep.json`, `report.html`, `plots/`.
        calib / eval: Calibration and evaluation data, as for `export`.
        input_shapes: Input shapes for PyTorch sources (default: from the data).
        settings: Latency settings of every check.
        workers: Recipes exported at the same time (1: one after the other, in this process).
        executor: `local` (worker processes) or `ray`.
        variants: Trained variants of the model compared in the same grid, e.g. a QAT or a
            binary-weight model: (row name, source, sweep recipe name) each, such as
            ("qat-int8", "samples.digits_lowbit.model:qat_int8", "int8").
        force: Write into an `out` folder that holds files edgeport did not write.
    """

    source: str
    targets: tuple[str, ...] = ("onnx",)
    recipes: tuple[str, ...] = DEFAULT_RECIPES
    out: str = "out/sweep"
    calib: str | None = None
    eval: str | None = None
    input_shapes: tuple[tuple[int, ...], ...] | None = None
    settings: CheckSettings | None = None
    workers: int = 2
    executor: str = "local"
    variants: tuple[tuple[str, str, str], ...] = ()
    force: bool = False

    def __post_init__(self):
        object.__setattr__(self, "targets", _names(self.targets))
        object.__setattr__(self, "recipes", _names(self.recipes))
        if not self.targets:
            raise InputError("sweep: name at least one target (--targets)")
        if not self.recipes:
            raise InputError("sweep: name at least one recipe (--recipes)")
        for name in self.recipes:
            RECIPES.get(name)  # an unknown name lists the known ones
        object.__setattr__(self, "variants", tuple(tuple(v) for v in self.variants))
        for name, _source, recipe in self.variants:
            RECIPES.get(recipe)
            if name in self.recipes or [v[0] for v in self.variants].count(name) > 1:
                raise InputError(f"sweep: variant name '{name}' is used twice (rows need distinct names)")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise InputError(f"--workers must be a whole number >= 1, got {self.workers}")
        from edgeport.sweep.executors import EXECUTORS

        EXECUTORS.get(self.executor)


@dataclass(frozen=True)
class RecipeJob:
    """One recipe's export: what a worker needs, with absolute paths (workers may run elsewhere)."""

    recipe_name: str
    recipe: Recipe
    targets: tuple[str, ...]
    source: str
    out: str  # the sweep's output folder; this recipe writes into out/<recipe_name>
    calib: str | None
    eval: str | None
    input_shapes: tuple[tuple[int, ...], ...] | None
    settings: CheckSettings
    workdir: str = field(default_factory=os.getcwd)


def run_recipe(job: RecipeJob) -> list[Configuration]:
    """Export one recipe to its targets and read back each target's numbers. Runs in a worker.

    Targets of one recipe are exported together; when that fails, each target is tried alone
    (into `<recipe>/only-<target>/`) so one target's error does not hide the others' results.
    """
    start = time.perf_counter()
    folder = Path(job.out) / job.recipe_name
    with _quiet_progress(), _importable(job.workdir):
        try:
            return _export(job, list(job.targets), folder, start)
        except Exception as exc:  # noqa: BLE001 - recorded per configuration, the sweep goes on
            if len(job.targets) == 1:
                return [_failed(job, job.targets[0], exc, start)]
        results = []
        for target in job.targets:
            try:
                results += _export(job, [target], folder / f"only-{target}", start)
            except Exception as exc:  # noqa: BLE001
                results.append(_failed(job, target, exc, start))
        return results


def _export(job: RecipeJob, targets: list[str], folder: Path, start: float) -> list[Configuration]:
    from edgeport.pipeline import REPORT_NAME, export
    from edgeport.sweep.records import from_target_report, onnx_layer_bytes

    report = export(job.source, targets, job.recipe, out=folder, calib=job.calib, eval=job.eval,
                    input_shapes=[tuple(s) for s in job.input_shapes] if job.input_shapes else None,
                    settings=job.settings, force=True)  # the sweep's own folder, checked by run_sweep
    seconds = round(time.perf_counter() - start, 2)
    relative = (folder / REPORT_NAME).relative_to(job.out).as_posix()
    configurations = []
    for entry in report.to_dict()["targets"]:
        config = from_target_report(job.recipe_name, entry, relative, seconds)
        if entry["format"] == "onnx" and entry["artifact"]:
            config.layer_bytes = onnx_layer_bytes(folder / entry["artifact"])
        configurations.append(config)
    return configurations


def _failed(job: RecipeJob, target: str, exc: BaseException, start: float | None) -> Configuration:
    message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    trace = "" if isinstance(exc, InputError) else \
        "".join(traceback.format_exception(exc)[-TRACEBACK_LINES:])
    return Configuration(job.recipe_name, target, FAILED, error=message.strip().splitlines()[0] if message.strip()
                         else type(exc).__name__, traceback=trace,
                         seconds=None if start is None else round(time.perf_counter() - start, 2))


@contextlib.contextmanager
def _quiet_progress():
    """Workers draw no bars of their own: the sweep's bar is the one over the grid."""
    before = os.environ.get("EDGEPORT_QUIET")
    os.environ["EDGEPORT_QUIET"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("EDGEPORT_QUIET", None)
        else:
            os.environ["EDGEPORT_QUIET"] = before


@contextlib.contextmanager
def _importable(workdir: str):
    """`module:factory` sources import from the folder the sweep was started in, as with export."""
    added = workdir not in sys.path
    if added:
        sys.path.insert(0, workdir)
    try:
        yield
    finally:
        if added and workdir in sys.path:
            sys.path.remove(workdir)


# ---------------------------------------------------------------- runner

def refusal(source: str, recipe: Recipe, target_name: str) -> str | None:
    """Why the target's exporter refuses this recipe or source, or None when it accepts them."""
    from edgeport import plugins
    from edgeport.targets import TARGETS

    target = TARGETS.get(target_name)
    if target.format not in plugins.exporters():
        return f"target '{target.name}' cannot be exported: {'; '.join(plugins.missing(target))}"
    exporter = plugins.exporters().get(target.format)
    try:
        exporter.check_source(source, target, recipe)
        exporter.check_request(recipe, {}, target, source)
    except InputError as exc:
        return str(exc)
    return None


def _absolute(path: str | None) -> str | None:
    """Files and folders as absolute paths; `module:function` references as given."""
    return str(Path(path).resolve()) if path and Path(path).exists() else path


def check_inputs(spec: SweepSpec) -> None:
    """Refuse, before any work, input that would make every configuration fail (InputError)."""
    import importlib.machinery
    import importlib.util

    from edgeport.data import sample_shape

    for source in (spec.source, *(v[1] for v in spec.variants)):
        if _is_reference(source):
            top = source.partition(":")[0].split(".")[0]
            if importlib.machinery.PathFinder.find_spec(top, [os.getcwd(), *sys.path]) is None:
                raise InputError(f"{source}: cannot find module '{top}' (run from the folder that holds it)")
        elif not Path(source).exists():
            raise InputError(f"{source}: no such file, and not a 'package.module:factory' reference")
    if spec.calib:
        sample_shape(spec.calib, "calibration data")
    if spec.eval:
        sample_shape(spec.eval, "eval data")
    needing = [n for n in (*spec.recipes, *(v[2] for v in spec.variants)) if RECIPES.get(n).needs_calibration]
    if needing and not spec.calib:
        raise InputError(f"recipe {', '.join(needing)} needs calibration data (--calib)")
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("matplotlib", "edgeport sweep's plots", "sweep")


def run_sweep(spec: SweepSpec) -> SweepReport:
    """Run the grid, then write `sweep.json`, `report.html` and the plots into `spec.out`.

    Raises:
        InputError: bad input (unknown target or recipe, missing source or data); nothing is written.
        MissingDependencyError: matplotlib, or ray for the Ray executor, is not installed.
    """
    from edgeport.checks import CheckSettings
    from edgeport.progress import progress
    from edgeport.sweep.executors import EXECUTORS
    from edgeport.sweep.report import SweepReport, write_outputs
    from edgeport.output import sweep_folder
    from edgeport.plugins import resolve_targets

    targets = [t.name for t in resolve_targets(list(spec.targets))]
    check_inputs(spec)
    settings = spec.settings or CheckSettings()
    sweep_folder(spec.out, spec.force)
    out = Path(spec.out).resolve()
    rows = [(name, spec.source, name) for name in spec.recipes] + list(spec.variants)  # (row, source, recipe)
    refused, jobs = [], []
    for name, row_source, recipe_name in rows:
        recipe = RECIPES.get(recipe_name)
        source = row_source if _is_reference(row_source) else _absolute(row_source)
        why = {t: refusal(source, recipe, t) for t in targets}
        refused += [Configuration(name, t, REFUSED, error=msg) for t, msg in why.items() if msg]
        accepted = tuple(t for t in targets if not why[t])
        if accepted:
            jobs.append(RecipeJob(name, recipe, accepted, source, str(out), _absolute(spec.calib),
                                  _absolute(spec.eval), spec.input_shapes, settings))
    start = time.perf_counter()
    outcomes = EXECUTORS.get(spec.executor)(run_recipe, jobs, spec.workers)  # raises before any work
    out.mkdir(parents=True, exist_ok=True)
    done = list(progress(_configurations(refused, outcomes), total=len(targets) * len(rows), desc="sweep"))
    order = {(r, t): i for i, (r, t) in enumerate((r[0], t) for r in rows for t in targets)}
    done.sort(key=lambda c: order[(c.recipe, c.target)])
    report = SweepReport(source=spec.source, targets=targets,
                         recipes={n: RECIPES.get(r) for n, _, r in rows}, configurations=done,
                         sources={n: src for n, src, _ in spec.variants},
                         settings=settings, workers=min(spec.workers, max(len(jobs), 1)), executor=spec.executor,
                         calib=spec.calib, eval=spec.eval, seconds=round(time.perf_counter() - start, 1))
    write_outputs(report, out)
    return report


def _is_reference(source: str) -> bool:
    from edgeport.sources import is_factory_ref

    return is_factory_ref(source) and not Path(source).exists()


def _configurations(refused: list[Configuration], outcomes):
    """Every configuration as it becomes known: refusals first, then each recipe as it finishes."""
    yield from refused
    for job, outcome in outcomes:
        if isinstance(outcome, BaseException):  # the worker itself died (e.g. a crashed process)
            yield from (_failed(job, t, outcome, None) for t in job.targets)
        else:
            yield from outcome
