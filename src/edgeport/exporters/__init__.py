"""Exporters: one module per artifact format, registered by format name.

`Exporter.export()` validates the request and writes into a fresh folder, removing it when the
export fails; subclasses implement `_export()`. The pipeline renames finished folders into the
user's output folder only after every target succeeded.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgeport.errors import InputError
from edgeport.model import FloatModel
from edgeport.quantizers.plan import QuantPlan
from edgeport.recipe import Recipe
from edgeport.registry import Registry
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
    """

    target: str
    format: str
    path: Path
    recipe: str
    notes: list[str] = field(default_factory=list)


class Exporter:
    """Base class. Subclasses set `format`, `suffix` and implement `_export`."""

    format: str = ""
    suffix: str = ""

    def export(self, model: FloatModel, recipe: Recipe, plan: QuantPlan, target: Target,
               out_dir: Path) -> Artifact:
        """Write the artifact for `target` into `out_dir` (created here, removed on failure)."""
        if target.format != self.format:
            raise InputError(f"target '{target.name}' wants format '{target.format}', not '{self.format}'")
        if plan.scheme != recipe.quantize:
            raise ValueError(f"plan is for '{plan.scheme}', recipe asks '{recipe.quantize}'")
        out_dir.mkdir(parents=True, exist_ok=False)
        try:
            return self._export(model, recipe, plan, target, out_dir / f"{model.name}{self.suffix}")
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise

    def _export(self, model: FloatModel, recipe: Recipe, plan: QuantPlan, target: Target,
                path: Path) -> Artifact:
        raise NotImplementedError


EXPORTERS: Registry[Exporter] = Registry("exporter")


def _build() -> None:
    from edgeport.exporters.onnx import OnnxExporter, OrtExporter

    for exporter in (OnnxExporter(), OrtExporter()):
        EXPORTERS.add(exporter.format, exporter)


_build()
