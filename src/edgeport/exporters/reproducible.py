"""Reproducible bytes: canonical forms of the files converters write differently on each run.

Two exports of one model with one recipe give byte-identical artifacts, whatever the output
folder. Most converters already do; these do not, and are rewritten here after they wrote:

- ORT format (`canonical_ort`): onnxruntime serializes its kernel type string table from a hash
  map, so the order of those FlatBuffers tables (and every offset to them) changes from run to
  run, even within one process. The content is the same: the table is rebuilt in sorted order.
- Core ML packages (`canonical_mlpackage`): coremltools stamps the conversion date into the
  model's metadata, serializes the protobuf's metadata map in hash order, and the package's
  `Manifest.json` gets random UUIDs. The date is dropped, the protobuf written with
  deterministic serialization, and each manifest identifier derived from the item's path and
  content (a name-based UUID of their SHA-256).

Paths: `source_label` keeps the user's folders out of artifacts (a file source is named by its
file name only).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

CONVERSION_DATE = "com.github.apple.coremltools.conversion_date"
_UUID_NAMESPACE = uuid.UUID("8a4f2f3e-5d0b-4c57-9a51-3f5e2b8d6c10")  # edgeport's, for uuid5
_FILE_SUFFIXES = (".onnx", ".pt2", ".tflite")


def source_label(source: str) -> str:
    """What an artifact records as its source: a model file by its name (the folder it was read
    from is the user's machine, not the model); a `module:factory` as given."""
    return Path(source).name if source.lower().endswith(_FILE_SUFFIXES) else source


# ------------------------------------------------------------------ ORT format

def canonical_ort(data: bytes) -> bytes:
    """The .ort file `data` with its kernel type string table in a canonical order.

    onnxruntime builds the file back to front: the version string, the model, then the kernel
    type string table, then the root table. Everything built before the table (the file's tail)
    is copied as is; the table and the root are built again, sorted by their keys (onnxruntime
    looks entries up by binary search, so sorted is also what it expects). Returns `data`
    unchanged when its layout is not the one described (another onnxruntime version), so that a
    layout change costs reproducibility, never a broken model.
    """
    try:
        canonical = _rebuild_ort(data)
    except (AssertionError, IndexError, ValueError):
        return data
    return canonical if _ort_content(canonical) == _ort_content(data) else data


def _table_start(tab, pos: int) -> int:
    """Lowest byte of a table: its vtable sits just before it when it was written with it."""
    import flatbuffers

    vtable = pos - flatbuffers.encode.Get(flatbuffers.packer.soffset, tab.Bytes, pos)
    return min(pos, vtable)


def _rebuild_ort(data: bytes) -> bytes:
    import flatbuffers
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import (
        ArgTypeAndIndex, InferenceSession, KernelTypeStrArgsEntry, KernelTypeStrResolver, OpIdKernelTypeStrArgsEntry)

    data = bytes(data)
    assert data[4:8] == b"ORTM"
    session = InferenceSession.InferenceSession.GetRootAs(data, 0)
    model, resolver = session.Model(), session.KernelTypeStrResolver()
    assert model is not None and resolver is not None
    version_field = session._tab.Offset(4)  # ort_version: table field 0
    assert version_field
    version_pos = session._tab.Indirect(session._tab.Pos + version_field)
    tail = _table_start(model._tab, model._tab.Pos)
    assert resolver._tab.Pos < tail and session._tab.Pos < tail and version_pos >= tail

    entries = []
    for i in range(resolver.OpKernelTypeStrArgsLength()):
        op = resolver.OpKernelTypeStrArgs(i)
        kinds = []
        for j in range(op.KernelTypeStrArgsLength()):
            kind = op.KernelTypeStrArgs(j)
            args = [(kind.Args(k).ArgType(), kind.Args(k).Index()) for k in range(kind.ArgsLength())]
            kinds.append((kind.KernelTypeStr(), args))
        entries.append((op.OpId(), sorted(kinds)))
    entries.sort()

    builder = flatbuffers.Builder(len(data) + 1024)
    builder.head -= len(data) - tail  # the tail, byte for byte, at the same distance from the end
    builder.Bytes[builder.head:] = data[tail:]
    builder.minalign = 8  # the tail's widest scalar (int64 dims and attributes)
    size = len(data)

    def vector(start, offsets):
        start(builder, len(offsets))
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    ops = []
    for op_id, kinds in entries:
        kind_tables = []
        for kind_str, args in kinds:
            arg_tables = []
            for arg_type, index in args:
                ArgTypeAndIndex.Start(builder)
                ArgTypeAndIndex.AddArgType(builder, arg_type)
                ArgTypeAndIndex.AddIndex(builder, index)
                arg_tables.append(ArgTypeAndIndex.End(builder))
            args_vector = vector(KernelTypeStrArgsEntry.StartArgsVector, arg_tables)
            name = builder.CreateSharedString(kind_str)
            KernelTypeStrArgsEntry.Start(builder)
            KernelTypeStrArgsEntry.AddKernelTypeStr(builder, name)
            KernelTypeStrArgsEntry.AddArgs(builder, args_vector)
            kind_tables.append(KernelTypeStrArgsEntry.End(builder))
        kinds_vector = vector(OpIdKernelTypeStrArgsEntry.StartKernelTypeStrArgsVector, kind_tables)
        name = builder.CreateSharedString(op_id)
        OpIdKernelTypeStrArgsEntry.Start(builder)
        OpIdKernelTypeStrArgsEntry.AddOpId(builder, name)
        OpIdKernelTypeStrArgsEntry.AddKernelTypeStrArgs(builder, kinds_vector)
        ops.append(OpIdKernelTypeStrArgsEntry.End(builder))
    ops_vector = vector(KernelTypeStrResolver.StartOpKernelTypeStrArgsVector, ops)
    KernelTypeStrResolver.Start(builder)
    KernelTypeStrResolver.AddOpKernelTypeStrArgs(builder, ops_vector)
    resolver_table = KernelTypeStrResolver.End(builder)

    InferenceSession.Start(builder)
    InferenceSession.AddOrtVersion(builder, size - version_pos)
    InferenceSession.AddModel(builder, size - model._tab.Pos)
    InferenceSession.AddKernelTypeStrResolver(builder, resolver_table)
    builder.Finish(InferenceSession.End(builder), file_identifier=b"ORTM")
    return bytes(builder.Output())


def _ort_content(data: bytes) -> tuple:
    """What the canonical form must keep: version, the model's bytes, the table's entries."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    session = InferenceSession.InferenceSession.GetRootAs(data, 0)
    model, resolver = session.Model(), session.KernelTypeStrResolver()
    entries = []
    for i in range(resolver.OpKernelTypeStrArgsLength()):
        op = resolver.OpKernelTypeStrArgs(i)
        for j in range(op.KernelTypeStrArgsLength()):
            kind = op.KernelTypeStrArgs(j)
            entries.append((op.OpId(), kind.KernelTypeStr(),
                            tuple((kind.Args(k).ArgType(), kind.Args(k).Index()) for k in range(kind.ArgsLength()))))
    return (session.OrtVersion(), bytes(data[_table_start(model._tab, model._tab.Pos):]),
            len(data) - model._tab.Pos, sorted(entries))


# ------------------------------------------------------------------ Core ML packages

def canonical_mlpackage(path: Path) -> None:
    """Rewrite the saved .mlpackage at `path` in place: no conversion date, the model protobuf
    serialized deterministically, manifest identifiers derived from each item's content."""
    from coremltools.proto import Model_pb2

    path = Path(path)
    manifest_file = path / "Manifest.json"
    manifest = json.loads(manifest_file.read_text())
    data = path / "Data"
    items = manifest["itemInfoEntries"]
    root = items[manifest["rootModelIdentifier"]]
    spec_file = data / root["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_file.read_bytes())
    metadata = spec.description.metadata.userDefined
    if CONVERSION_DATE in metadata:
        del metadata[CONVERSION_DATE]
    spec_file.write_bytes(spec.SerializeToString(deterministic=True))

    renamed = {old: str(uuid.uuid5(_UUID_NAMESPACE, f"{item['path']}\n{_content_digest(data / item['path'])}"))
               for old, item in items.items()}
    manifest["itemInfoEntries"] = {renamed[old]: item for old, item in items.items()}
    manifest["rootModelIdentifier"] = renamed[manifest["rootModelIdentifier"]]
    manifest_file.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")


def _content_digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's relative file names and contents in sorted order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
