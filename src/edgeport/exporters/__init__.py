"""Exporters: one module per artifact format, registered by format name.

`Exporter.export()` validates the request and writes into a fresh folder, removing it when the
export fails; subclasses implement `_export()`. The pipeline renames finished folders into the
user's output folder only after every target succeeded.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar

from edgeport.data import Dataset
from edgeport.errors import InputError
from edgeport.model import FloatModel
from edgeport.quantizers.plan import QuantPlan
from edgeport.recipe import Recipe
from edgeport.schemes import Scheme
from edgeport.targets import Target


@dataclass
class Artifact:
    """One exported model file plus what the checks need to know about it.

    Attributes:
        target: Target name.
        format: Artifact format.
        path: The model file (inside the work folder until the pipeline moves it).
        recipe: Human description of the recipe applied.
        notes: Facts the report should show (deviations, what was kept in float, ...).
        baseline: The float model in the same format, when the exporter made one (size ratio α
            and speedup δ are then measured against it rather than the float ONNX model).
        layers_reference: For formats whose `baseline` is not the float model per-layer numerics
            (`--layers`) compare with: writes that model (into the work folder, once) and returns
            its path. Only the layers check calls it: the conversion costs time that only
            `--layers` needs, and the file changes no other check's numbers (α, δ). None when
            there is no such model (a C library made from a given .tflite).
    """

    target: str
    format: str
    path: Path
    recipe: str
    notes: list[str] = field(default_factory=list)
    baseline: Path | None = None
    layers_reference: Callable[[], Path] | None = None


@dataclass
class ExportJob:
    """Everything an exporter needs, the same for every target of one export.

    Attributes:
        model: The float model (weights already compressed by the recipe, if it asks).
        recipe: The recipe.
        plan: The recipe's quantization parameters, computed once.
        calib: Calibration data, for formats that calibrate inside their own graph.
        options: Per-target options, e.g. {"ios": {"deployment_target": "iOS17"}}.
        uncompressed: The model before the recipe's pruning / palettes (formats that store
            compressed weights natively start from it); None when nothing was compressed.
        original: The model as given, when structured pruning made `model` smaller; float
            baselines (α, δ) start from it. None otherwise.
    """

    model: FloatModel
    recipe: Recipe
    plan: QuantPlan
    calib: Dataset | None = None
    options: dict[str, dict] = field(default_factory=dict)
    uncompressed: FloatModel | None = None
    original: FloatModel | None = None
    cache: dict = field(default_factory=dict)  # artifacts several targets share (e.g. the int8 .tflite)


@dataclass(frozen=True)
class Refuse:
    """A row of an exporter's scheme table: the format cannot hold this scheme, and why."""

    reason: str


@dataclass(frozen=True)
class Refusal:
    """A declarative refusal: when `applies(recipe, options)` holds, the request is refused with
    `message` (a string formatted with `recipe` and `options`, or a function of both), prefixed
    with the target's name, before any work."""

    applies: Callable[[Recipe, Any], bool]
    message: str | Callable[[Recipe, Any], str]

    def text(self, recipe: Recipe, options) -> str:
        if callable(self.message):
            return self.message(recipe, options)
        return self.message.format(recipe=recipe, options=options)


class Exporter:
    """Base class. Subclasses set `format`, `suffix`, their scheme table and implement `_export`;
    they may override `describe` (op list, weight bytes) and `read_params` (quantization
    parameters stored).

    Class attributes:
        schemes: {scheme config type: handler, or `Refuse(reason)`}. A scheme missing from the
            table is refused with the list of those the format holds. `handler(recipe)` returns
            the row for the recipe's scheme.
        refusals: `Refusal` rows checked before any work (recipe / option combinations the format
            cannot express).
        options_type: The frozen dataclass of this format's target options (None: no options);
            `options(job_options, target)` builds it from the target's TOML section.
        float_layers: Whether float overrides (`keep_float`, `--override X=float`) are honored. A
            format without them takes `--fallback auto` and refuses at export only when the
            fallback moved layers (when int8 meets the goal, nothing moved and it exports).
        mixed_precision: Whether int8 / int16 per-layer overrides are honored.
    """

    format: str = ""
    suffix: str = ""
    schemes: ClassVar[dict[type[Scheme], Any]] = {}
    refusals: ClassVar[tuple[Refusal, ...]] = ()
    options_type: ClassVar[type | None] = None
    float_layers: ClassVar[bool] = True
    mixed_precision: ClassVar[bool] = False
    # converters that start from the PyTorch module, not the ONNX graph; an .onnx source reaches
    # them converted to one (`torch_job`)
    needs_torch_source = False
    takes_tflite = False  # formats made from an existing .tflite file as is (Cortex-M C)

    def export(self, job: ExportJob, target: Target, out_dir: Path) -> Artifact:
        """Write the artifact for `target` into `out_dir` (created here, removed on failure)."""
        if target.format != self.format:
            raise InputError(f"target '{target.name}' wants format '{target.format}', not '{self.format}'")
        if job.plan.scheme != job.recipe.scheme.name:
            raise ValueError(f"plan is for '{job.plan.scheme}', the recipe's scheme is '{job.recipe.scheme.name}'")
        moved = [*job.plan.float_nodes, *(job.plan.precisions if not self.mixed_precision else ())]
        if moved and not self.float_layers:  # `--fallback auto` decided once for all targets
            raise InputError(f"{target.name}: --fallback auto moved {len(moved)} layer(s) out of int8 "
                             f"({', '.join(moved[:3])}{', ...' if len(moved) > 3 else ''}); the {self.format} format "
                             "runs int8 kernels only: export it without --fallback, or with a goal int8 meets")
        out_dir.mkdir(parents=True, exist_ok=False)
        try:
            return self._export(job, target, out_dir / f"{job.model.name}{self.suffix}")
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise

    def handler(self, recipe: Recipe):
        """This format's table row for the recipe's scheme (refused schemes never get here)."""
        return self.schemes[type(recipe.scheme)]

    def options(self, options: dict, target: Target):
        """The target's options as this format's options dataclass (its TOML section's values)."""
        if self.options_type is None:
            return None
        values = options.get(target.options, {})
        known = [f.name for f in fields(self.options_type)]
        unknown = set(values) - set(known)
        if unknown:
            raise InputError(f"{target.options}: unknown option(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(known))})")
        return self.options_type(**values)

    def check_request(self, recipe: Recipe, options: dict, target: Target, source: str = "") -> None:
        """Refuse, before any work, a recipe or options this format cannot honor (InputError)."""
        parsed = self.options(options, target)
        if source.endswith(".tflite") and self.takes_tflite:
            return  # an existing model keeps its own quantization
        row = self.schemes.get(type(recipe.scheme))
        if row is None:
            held = ", ".join(cls.name for cls, r in self.schemes.items() if not isinstance(r, Refuse))
            raise InputError(f"{target.name}: the {self.format} format cannot hold the '{recipe.scheme.name}' "
                             f"recipe (it holds: {held})")
        if isinstance(row, Refuse):
            raise InputError(f"{target.name}: {row.reason}")
        if (recipe.keep_float or "float" in recipe.overrides.precisions()) and not self.float_layers:
            raise InputError(f"{target.name}: the {self.format} format cannot leave layers in float "
                             "(keep_float / float overrides)")
        mixed = recipe.mixed_precision()
        if mixed and not self.mixed_precision:
            raise InputError(f"{target.name}: per-layer {' / '.join(sorted(mixed))} overrides inside a "
                             f"{recipe.scheme.name} model are not written to {self.format} by this edgeport version")
        for refusal in self.refusals:
            if refusal.applies(recipe, parsed):
                raise InputError(f"{target.name}: {refusal.text(recipe, parsed)}")

    def check_source(self, source: str, target: Target, recipe: Recipe | None = None) -> None:
        """Refuse, before any work, a source this format cannot start from (InputError)."""
        if source.endswith(".tflite") and not self.takes_tflite:
            raise InputError(f"{target.name}: an existing .tflite file exports to Cortex-M targets only "
                             f"(to check it on Android: edgeport check {source} --target android)")
        if self.needs_torch_source and source.endswith(".onnx"):
            from edgeport.onnx_torch import check_convertible

            check_convertible(source, target.name)  # the graph becomes a PyTorch module (torch_job)

    def _export(self, job: ExportJob, target: Target, path: Path) -> Artifact:
        raise NotImplementedError

    def describe(self, path: Path) -> dict | None:
        """{"ops": {op: count}, "weight_bytes": {storage kind: bytes}} of an artifact, if known."""
        return None

    def read_params(self, path: Path, plan: QuantPlan) -> dict | None:
        """Compare quantization parameters stored in the artifact with `plan`, if the format allows."""
        return None


def torch_job(job: ExportJob) -> ExportJob:
    """`job` with PyTorch modules for the converters that start from one: an .onnx source's graphs
    (the model, and the uncompressed / original ones when the recipe made them) converted by
    `edgeport.onnx_torch` once per job, shared by every target that asks."""
    if job.model.torch_module is not None or job.model.tflite_bytes:
        return job
    if "torch_job" not in job.cache:
        from dataclasses import replace

        from edgeport.onnx_torch import to_torch

        def convert(model):
            return None if model is None else to_torch(model)

        job.cache["torch_job"] = replace(job, model=convert(job.model), uncompressed=convert(job.uncompressed),
                                         original=convert(job.original))
    return job.cache["torch_job"]


def artifact_bytes(path: Path) -> int:
    """Size of an artifact file, or of every file in an artifact folder (.mlpackage)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
