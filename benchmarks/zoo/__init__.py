"""The conformance zoo (issue #15): real architectures with random weights and trained models
shipped in wheels, each with realistic inputs, to export with every recipe to every target.

    from benchmarks.zoo import ENTRIES, get
    entry = get("mobilenet_v2")
    entry.source                     # "benchmarks.zoo.cnn:mobilenet_v2", an edgeport source
    entry.write_data(folder)         # <folder>/mobilenet_v2.npz, arrays named after the inputs
    formats(entry)                   # formats it should fit: ("onnx", "ort", ..., "c")

Families, one module each: `cnn` (mobile CNNs), `vit` (vision transformers and hybrids),
`dense` (segmentation and detection, several outputs), `text` (transformers encoders, int64
ids + mask), `audio` (Whisper / wav2vec 2.0 encoders, a GRU keyword model), `ops` (purpose-built
models for the ops the others miss, the autoencoder), `trained` (wheel-shipped ONNX models).
`coverage` lists which model exercises which op. Run from the repository root, so that
`benchmarks.zoo.<module>:<factory>` sources import.

Nothing is downloaded: definitions come from installed packages (`pip install -e .[zoo]`),
weights are random and seeded, inputs are generated (`data`).
"""

from __future__ import annotations

import functools

from benchmarks.zoo import audio, cnn, dense, ops, text, trained, vit
from benchmarks.zoo._common import FORMATS, SEED, Entry, Input

__all__ = ["ENTRIES", "FORMATS", "SEED", "Entry", "Input", "get", "select", "formats", "weight_count",
           "build", "C_FORMAT_BUDGET"]

FAMILY_MODULES = (cnn, vit, dense, text, audio, ops, trained)


def _registry() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for module in FAMILY_MODULES:
        for entry in module.ENTRIES:
            if entry.name in entries:
                raise ValueError(f"zoo entry '{entry.name}' is defined twice ({module.__name__})")
            entries[entry.name] = entry
    return entries


ENTRIES: dict[str, Entry] = _registry()


def get(name: str) -> Entry:
    """The entry called `name`; an unknown name raises, listing the known ones."""
    if name not in ENTRIES:
        raise KeyError(f"no zoo model '{name}'; known: {', '.join(ENTRIES)}")
    return ENTRIES[name]


def select(spec: str | None) -> list[Entry]:
    """Entries by comma-separated names or family names (`text,mobilenet_v2`); all when empty."""
    if not spec:
        return list(ENTRIES.values())
    chosen: list[Entry] = []
    for word in (w.strip() for w in spec.split(",") if w.strip()):
        family = [e for e in ENTRIES.values() if e.family == word]
        for entry in family or [get(word)]:
            if entry not in chosen:
                chosen.append(entry)
    return chosen


def build(entry: Entry):
    """The torch module of a factory entry (what edgeport imports from `entry.source`)."""
    import importlib

    module_name, _, attr = entry.source.partition(":")
    return getattr(importlib.import_module(module_name), attr)()


@functools.lru_cache(maxsize=None)
def weight_count(name: str) -> int:
    """Number of weights (parameters, or floating-point ONNX initializer values)."""
    entry = get(name)
    if entry.is_onnx:
        import onnx

        model = onnx.load(entry.source, load_external_data=False)
        tensors = list(model.graph.initializer) + [
            a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
        floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
        total = 0
        for tensor in tensors:
            if tensor.data_type in floats:
                count = 1
                for dim in tensor.dims:
                    count *= dim
                total += count
        return total
    return sum(p.numel() for p in build(entry).parameters())


# The C library holds int8 weights (one byte each) in flash beside its code; a model fits the
# largest board when its weights take at most this share of the board's flash.
C_FORMAT_BUDGET = 0.85


def largest_board_flash() -> int:
    from edgeport.targets import PROFILES

    return max(t.flash_bytes for t in PROFILES if t.format == "c" and t.flash_bytes)


def formats(entry: Entry) -> tuple[str, ...]:
    """The formats `entry` should fit: every format but those its entry excludes, and the C library
    only when its int8 weights fit the largest board's flash."""
    excluded = {fmt for fmt, _ in entry.exclude}
    if entry.missing():
        return ()
    if weight_count(entry.name) > C_FORMAT_BUDGET * largest_board_flash():
        excluded.add("c")
    return tuple(f for f in FORMATS if f not in excluded)
