"""How litert-torch names a .tflite's tensors after the PyTorch modules that made them.

A tensor name is its module scopes, `<qualified class>_<attribute>` each, joined by '/':
`pkg.Net/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_0;1`; an op
fused from several modules (a conv and its ReLU) names its output after each, joined by ';'.
The android exporter finds the plan's layers by these names (per-layer precisions) and so does
the per-layer check (`edgeport.checks.layers`). The shipped file carries them shortened to the
module paths (`shorten_names`).
"""

from __future__ import annotations

import re


def tensor_scopes(tensor: str) -> list[str]:
    """The `<qualified class>_<attribute>` scopes of a tensor name (its first ';' part), split at
    each '/' that starts a qualified class name (an attribute may hold '/' itself: onnx2torch
    names a module 'p2o/Conv/3')."""
    if tensor.startswith(SHORT):
        return []  # already a module path (`short_name`)
    return re.split(r"/(?=[A-Za-z_]\w*(?:\.\w+)+_)", tensor.split(";")[0])[1:]


def tensor_module_path(tensor: str) -> str:
    """The PyTorch module path a tensor name is scoped with: `...Sequential_features/...Conv2d_0;1`
    (or its `short_name`, `/features.0;1`) -> `features.0` ('' when the name has no scopes)."""
    first = tensor.split(";")[0]
    if first.startswith(SHORT):
        return first[len(SHORT):]
    parts = [scope.rsplit(".", 1)[-1].partition("_")[2] for scope in tensor_scopes(tensor)]
    return ".".join(p for p in parts if p)


def enclosing_layer(path: str, layers) -> str | None:
    """The entry of `layers` (module paths) that is `path` or holds it as a submodule: an ONNX
    source's LSTM module `rnn/LSTM` computes in its child `rnn/LSTM.layer`."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in layers:
            return ".".join(parts[:end])
    return None


FLATBUFFER_LIMIT = 2**31 - 2**24  # a flatbuffer holds < 2 GiB: larger files keep their names
SHORT = "/"  # a shortened name starts with it: `/features.0;1` (converter names never do)


def short_name(name: str) -> str:
    """`name` with each ';' part's scopes replaced by the module path they spell, after `SHORT`:
    `pkg.Net/...Sequential_features/...Conv2d_0;1` -> `/features.0;1`. Parts without scopes (a
    signature's `serving_default_...` names, the numbers that keep names unique) stay."""
    parts = name.split(";")
    return ";".join(SHORT + tensor_module_path(p) if tensor_scopes(p) else p for p in parts)  # idempotent


def shorten_names(tflite: bytes) -> bytes:
    """The .tflite with every tensor named by `short_name`: litert-torch's scope names repeat each
    module's qualified class path (`torch.nn.modules.conv.Conv2d_...`), a third of a small model's
    file and more of a transformer's. The module paths, which the android exporter and the layers
    check read, are kept; a name two tensors would share gets `#k`. Written here: no converter
    option shortens them, and the flatbuffer is read and written with LiteRT's own schema."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    import numpy as np

    if len(tflite) >= FLATBUFFER_LIMIT:
        return tflite
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    for buffer in model.buffers or []:
        if (buffer.offset or 0) > 1:  # stored after the flatbuffer (large weights): held inline instead
            buffer.data = np.frombuffer(tflite[buffer.offset:buffer.offset + buffer.size], dtype=np.uint8)
            buffer.offset, buffer.size = 0, 0
    for subgraph in model.subgraphs or []:
        taken: set[bytes] = set()
        for tensor in subgraph.tensors or []:
            raw = tensor.name.decode("utf-8", "replace") if isinstance(tensor.name, bytes) else (tensor.name or "")
            short, k = short_name(raw).encode(), 1
            unique = short
            while unique in taken:
                unique, k = short + f"#{k}".encode(), k + 1
            taken.add(unique)
            tensor.name = unique
    builder = flatbuffers.Builder(len(tflite))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
