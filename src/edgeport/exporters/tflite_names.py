"""How litert-torch names a .tflite's tensors after the PyTorch modules that made them.

A tensor name is its module scopes, `<qualified class>_<attribute>` each, joined by '/':
`pkg.Net/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_0;1`; an op
fused from several modules (a conv and its ReLU) names its output after each, joined by ';'.
The android exporter finds the plan's layers by these names (per-layer precisions) and so does
the per-layer check (`edgeport.checks.layers`).
"""

from __future__ import annotations

import re


def tensor_scopes(tensor: str) -> list[str]:
    """The `<qualified class>_<attribute>` scopes of a tensor name (its first ';' part), split at
    each '/' that starts a qualified class name (an attribute may hold '/' itself: onnx2torch
    names a module 'p2o/Conv/3')."""
    return re.split(r"/(?=[A-Za-z_]\w*(?:\.\w+)+_)", tensor.split(";")[0])[1:]


def tensor_module_path(tensor: str) -> str:
    """The PyTorch module path a tensor name is scoped with: `...Sequential_features/...Conv2d_0;1`
    -> `features.0` ('' when the name has no scopes)."""
    parts = [scope.rsplit(".", 1)[-1].partition("_")[2] for scope in tensor_scopes(tensor)]
    return ".".join(p for p in parts if p)
