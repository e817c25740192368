"""Reading an `.onnx` file as untrusted input: parsed and validated before anything runs it.

Every failure is a one-line InputError naming the file: a corrupt or truncated protobuf, names that
are not valid text, external data outside the model's folder (or reached through a link), quantize /
dequantize parameters that are not finite and in range, ops outside the standard domains.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeport.errors import InputError, UnsupportedOpError, first_line as _first_line


def read_onnx(path: Path):
    """Parse and validate an ONNX file; every failure is a one-line InputError. External data is
    read into the model (from the model's folder only, see `inline_external_data`), so the model
    returned is self-contained."""
    import onnx

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise InputError(f"{path}: file is empty")
    try:
        model = onnx.load_from_string(data)
    except Exception:  # protobuf raises DecodeError or RuntimeError depending on the damage
        raise InputError(f"{path}: not a readable ONNX file (truncated or corrupt)") from None
    if not model.graph.node:
        raise InputError(f"{path}: not a readable ONNX file (truncated or corrupt: the graph has no nodes)")
    check_names(model, path)
    if not model.graph.output:
        raise InputError(f"{path}: the graph declares no outputs")
    check_standard_ops(model)  # first, so an unknown op is named with its node
    inline_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, UnicodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path}: invalid ONNX model: {first}") from None
    check_qdq_params(model, path)
    return model


def check_names(model, path: Path) -> None:
    """Refuse names that are not valid UTF-8 (protobuf hands them over as bytes), naming where."""
    graph = model.graph
    named = [("input", v.name) for v in graph.input] + [("output", v.name) for v in graph.output] + \
        [("value", v.name) for v in graph.value_info] + [("initializer", t.name) for t in graph.initializer]
    for node in graph.node:
        named += [("node", node.name), (f"op type of node {node.name!r}", node.op_type),
                  (f"domain of node {node.name!r}", node.domain)]
        named += [(f"input of node {node.name!r}", n) for n in node.input]
        named += [(f"output of node {node.name!r}", n) for n in node.output]
        named += [(f"attribute of node {node.name!r}", a.name) for a in node.attribute]
    named += [("opset domain", o.domain) for o in model.opset_import]
    for what, name in named:
        if not isinstance(name, str):
            raise InputError(f"{path}: {what} name {bytes(name)[:40]!r} is not valid UTF-8")


def _all_tensors(graph):
    """Every TensorProto of `graph`: initializers and tensor attributes, in subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def inline_external_data(model, path: Path) -> None:
    """Read every tensor stored as ONNX external data into `model`.

    Locations are resolved relative to the model file (not the current folder) and must stay
    inside the model's folder: absolute paths, `..` escapes, symbolic links resolving outside it
    and files with more than one hard link (a hard link cannot tell where else it lives) are refused,
    as are offsets and lengths outside the file, each in one line naming the tensor."""
    from onnx import TensorProto

    folder = path.parent.resolve()
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        where = f"{path}: tensor '{tensor.name}' stores its data in external file"
        location = info.get("location", "")
        if not location or "\0" in location or os.path.isabs(location):
            raise InputError(f"{where} {location!r}: give a relative path inside the model's folder")
        target = path.parent / location
        real = Path(os.path.realpath(target))
        if not real.is_relative_to(folder):
            raise InputError(f"{where} {location!r}, which is outside the model's folder {folder} "
                             "(external data must live beside the model; links out of it are refused)")
        if not real.is_file():
            raise InputError(f"{where} {location!r}, which does not exist (looked in {folder})")
        stat = real.stat()
        if stat.st_nlink > 1:
            raise InputError(f"{where} {location!r}, which has {stat.st_nlink} hard links; copy the file "
                             "instead (a hard link may point at data outside the model's folder)")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else stat.st_size - offset
        except ValueError:
            raise InputError(f"{where} {location!r} with a non-numeric offset or length") from None
        if offset < 0 or length < 0 or offset + length > stat.st_size:
            raise InputError(f"{where} {location!r} at bytes {offset}..{offset + length}, outside the file "
                             f"({stat.st_size} bytes)")
        with open(real, "rb") as f:
            f.seek(offset)
            tensor.raw_data = f.read(length)
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


def check_qdq_params(model, path: Path) -> None:
    """Refuse QuantizeLinear / DequantizeLinear scales that are not finite and positive, and zero
    points outside the range of the quantized type, naming the node and the tensor."""
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output and node.attribute and node.attribute[0].HasField("t"):
            constants.setdefault(node.output[0], node.attribute[0].t)
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 2:
            continue
        where = f"{path}: {node.op_type} node '{node.name}'"
        scale = constants.get(node.input[1])
        if scale is not None:
            values = _array(numpy_helper, scale, where)
            bad = values[~(np.isfinite(values) & (values > 0))] if values.dtype.kind == "f" else values[:0]
            if bad.size:
                raise InputError(f"{where}: scale '{scale.name}' holds {bad.flat[0]}; quantization scales must be "
                                 "finite and positive")
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero_point is not None:
            values = _array(numpy_helper, zero_point, where)
            if values.dtype.kind not in "iu":
                raise InputError(f"{where}: zero point '{zero_point.name}' is {values.dtype}, not an integer type")


def _array(numpy_helper, tensor, where: str) -> np.ndarray:
    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except Exception as exc:  # noqa: BLE001 - a tensor whose bytes do not match its type and shape
        raise InputError(f"{where}: tensor '{tensor.name}' cannot be read ({_first_line(exc)})") from None


def check_standard_ops(model) -> None:
    """Refuse operators outside the ONNX standard (and onnxruntime's own domain), naming op and node."""
    import onnx.defs

    opset = {o.domain or "": o.version for o in model.opset_import}
    for node in model.graph.node:
        domain = node.domain or ""
        if domain in ("", "ai.onnx"):
            if not onnx.defs.has(node.op_type, domain):
                raise UnsupportedOpError(node.op_type, node.name, "not an ONNX standard operator")
        elif domain != "com.microsoft":
            raise UnsupportedOpError(f"{domain}:{node.op_type}", node.name,
                                     f"custom domain '{domain}' (opset {opset.get(domain)}) has no kernels here")
