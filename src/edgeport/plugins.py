"""The one place where the exporter, runtime and check registries are filled.

Each registry is built on first use, by importing its implementations here, explicitly: no
module registers itself as a side effect of being imported, so importing a value type
(`edgeport.data`, `edgeport.tensors`) never loads a runtime, an exporter or a check. Adding a
target's exporter, runtime or check is one line in the matching function below.
"""

from __future__ import annotations

import importlib.util
import shutil
from functools import cache
from typing import TYPE_CHECKING

from edgeport.registry import Registry
from edgeport.targets import Target
from edgeport.targets import resolve_targets as _named_targets

if TYPE_CHECKING:
    from edgeport.checks import CheckSpec
    from edgeport.exporters import Exporter
    from edgeport.tensors import Runtime


@cache
def exporters() -> Registry["Exporter"]:
    """Artifact format -> exporter."""
    from edgeport.exporters.c import CExporter
    from edgeport.exporters.coreml import CoreMLExporter
    from edgeport.exporters.onnx import OnnxExporter, OrtExporter
    from edgeport.exporters.tfjs import TFJSExporter
    from edgeport.exporters.tflite import TFLiteExporter

    registry: Registry[Exporter] = Registry("exporter")
    for exporter in (OnnxExporter(), OrtExporter(), CoreMLExporter(), TFLiteExporter(), TFJSExporter(), CExporter()):
        registry.add(exporter.format, exporter)
    return registry


@cache
def runtimes() -> Registry["Runtime"]:
    """Runtime name (a target's `runtime`) -> runtime. Each reports its availability without
    importing its backend, so `edgeport targets` stays fast."""
    from edgeport.runtimes.browser import ChromiumRuntime
    from edgeport.runtimes.coreml import CoreMLMilRuntime
    from edgeport.runtimes.litert import LiteRTRuntime
    from edgeport.runtimes.onnxruntime import OnnxRuntime
    from edgeport.runtimes.qemu import QemuRuntime

    registry: Registry[Runtime] = Registry("runtime")
    for runtime in (OnnxRuntime(), CoreMLMilRuntime(), LiteRTRuntime(), ChromiumRuntime(), QemuRuntime()):
        registry.add(runtime.name, runtime)
    return registry


@cache
def checks() -> Registry["CheckSpec"]:
    """Check name -> check, in the order they run (a check's `after` names checks above it)."""
    from edgeport.checks import browser, coreml_predict, layers, litert_kernels, mcu, measure, numerics

    registry: Registry[CheckSpec] = Registry("check")
    for spec in (measure.SIZE, measure.STRUCTURE, numerics.PARAMS, numerics.PARITY, numerics.ACCURACY,
                 layers.LAYERS, measure.LATENCY, litert_kernels.REFERENCE_KERNELS, coreml_predict.COREML_PREDICT,
                 browser.BROWSER, mcu.FIRMWARE, mcu.BIT_EXACT):
        registry.add(spec.name, spec)
    return registry


def missing(target: Target) -> list[str]:
    """Reasons `target` cannot be exported and checked here; empty when it can."""
    reasons = []
    if target.format not in exporters():
        reasons.append(f"no '{target.format}' exporter in this edgeport version")
    elif target.runtime in runtimes():
        why = runtimes().get(target.runtime).availability()
        if why:
            reasons.append(why)
    else:
        reasons.append(f"runtime '{target.runtime}' is not supported in this edgeport version")
    reasons += [f"Python package '{p}' is not installed" for p in target.python_packages
                if importlib.util.find_spec(p) is None]
    reasons += [f"program '{p}' is not on PATH" for p in target.programs if shutil.which(p) is None]
    return reasons


def resolve_targets(spec: str | list[str]) -> list[Target]:
    """Targets named by a comma-separated string or list; `all` = every target usable here."""
    return _named_targets(spec, usable=lambda t: not missing(t))
