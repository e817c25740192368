"""Import torchvision and timm on a CPU build of torch.

PyPI's torchvision wheels for x86-64 link their C++ ops (`_C.so`: nms, roi_align, ...) against
torch's CUDA libraries, so with `torch==2.13.0+cpu` the library does not load. torchvision then
still imports, except that its meta registrations call `register_fake("torchvision::nms")`, which
needs the op's schema. The zoo uses no torchvision C++ op (its detection entry stops before the
NMS), so when the library is missing we declare the two schemas that registration needs and
nothing else: model definitions then import, and any real call of those ops still fails loudly.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY = None  # kept alive: the schemas live as long as this object


def _declare_missing_ops() -> None:
    global _LIBRARY
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or _LIBRARY is not None:
        return
    library = Path(spec.submodule_search_locations[0]) / "_C.so"
    try:
        torch.ops.load_library(str(library))
        return
    except (OSError, ImportError):
        pass
    _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")  # noqa: TOR901 - schemas only
    for schema in _SCHEMAS.values():
        _LIBRARY.define(schema)


def torchvision():
    """The torchvision package (its model definitions), importable on a CPU build of torch."""
    _declare_missing_ops()
    return importlib.import_module("torchvision")


def timm():
    """The timm package (it imports torchvision's transforms)."""
    _declare_missing_ops()
    return importlib.import_module("timm")


def transformers():
    """The transformers package: its modeling code imports torchvision when it is installed."""
    _declare_missing_ops()
    module = importlib.import_module("transformers")
    module.logging.set_verbosity_error()
    return module
