"""edgeport: turn a trained model into a checked on-device artifact.

    import edgeport
    report = edgeport.export("samples.digits.model:build", targets="onnx",
                             recipe=edgeport.Recipe(quantize="int8"),
                             calib="samples/digits/calib.npz", eval="samples/digits/eval.npz",
                             out="out/digits", budgets={"max_accuracy_drop": 0.5})
    print(report.table()); raise SystemExit(report.exit_code)

Importing edgeport loads no model backend (torch, onnx, onnxruntime, tensorflow, coremltools);
they are imported when a step needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "export": ("edgeport.pipeline", "export"),
    "check": ("edgeport.pipeline", "check"),
    "Recipe": ("edgeport.recipe", "Recipe"),
    "CheckSettings": ("edgeport.checks", "CheckSettings"),
    "Report": ("edgeport.report", "Report"),
    "InputError": ("edgeport.errors", "InputError"),
    "EdgeportError": ("edgeport.errors", "EdgeportError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgeport' has no attribute '{name}'")
