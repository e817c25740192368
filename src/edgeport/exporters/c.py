"""Cortex-M exporter: an int8 TFLite model -> a standalone C library plus a C array of the model.

The int8 model is either an existing `.tflite` file (exported as is) or made from the PyTorch
model by the android exporter's int8 path (the recipe's plan, integer I/O), so the C library,
the .tflite and every other target share the same quantization numbers. The artifact is a folder:

    <name>.h / <name>.c + kernel sources   the library (no interpreter, no malloc, one static arena)
    <name>_data.h / <name>_data.c          the .tflite bytes as an aligned C array (TFLite Micro)
    <name>.tflite                          the int8 model both were made from
    CMakeLists.txt, library.json, example/ firmware integration (CMake, PlatformIO, a QEMU example)
    edgeport.json                          I/O, arena, weight bytes, MACs and the board, for the checks

`<name>` is the model's name made a valid C identifier ("1kws" gives `m_1kws`; the headers say
so). Every file is the same on every export of the same model and recipe: no paths, no dates.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from edgeport.errors import InputError
from edgeport.exporters import Artifact, Exporter, ExportJob, Refuse
from edgeport.exporters.reproducible import source_label
from edgeport.mcu.toolchain.manifest import read_manifest, write_manifest
from edgeport.recipe import Recipe
from edgeport.schemes import SCHEMES, Int8Static
from edgeport.targets import Target
from edgeport.targets.options import McuOptions

# Flash the library needs beyond its weights (kernels, invoke code), for the fit check made
# before any build; the firmware check measures the real figure from the ELF.
CODE_ALLOWANCE = 16 * 1024
INT8_ONLY = ("the C library runs int8 kernels; export with --quantize int8 (and --calib) or give an int8 "
             ".tflite (recipe is '{}')")


def weight_storage(recipe: Recipe | None, options: McuOptions):
    """How the library stores its weights in flash, from the recipe and the `mcu` options.

    `auto` packs binary / ternary filters (int8 values all ±1 or -1/0/+1, as binary and ternary
    training leave them) into 1 or 2 bits with multiply-free kernels, and follows the recipe:
    palette indices + lookup table after `palettize`, sparse rows with relative indices after
    `prune`; `huffman` adds Huffman coding of both index streams (Deep Compression's last
    stage); `dense` keeps plain int8 arrays (None).
    """
    from edgeport.mcu.compiler.storage import WeightStorage

    mode, decode = options.storage, options.decode
    if mode == "dense":
        return None
    if mode == "huffman":
        return WeightStorage(palette=True, sparse=True, huffman=True, decode=decode, lowbit=True)
    compress = recipe is not None
    return WeightStorage(palette=compress and bool(recipe.palettize), sparse=compress and bool(recipe.prune),
                         decode=decode, lowbit=True)


class CExporter(Exporter):
    format = "c"
    suffix = ""
    takes_tflite = True
    # an .onnx source becomes a PyTorch module first, as for android (the int8 .tflite comes from there)
    needs_torch_source = True
    options_type = McuOptions
    float_layers = False  # int8 and int16x8 kernels only
    mixed_precision = True  # int16 layers run on the int16x8 kernels (the android exporter's mixed .tflite)
    # the int8 model is made by the android exporter's int8 path; every other scheme is refused
    schemes = {cls: Refuse(INT8_ONLY.format(cls.name)) for cls in SCHEMES if cls is not Int8Static}
    schemes[Int8Static] = "int8"

    def _export(self, job: ExportJob, target: Target, path: Path) -> Artifact:
        from edgeport.mcu.compiler.codegen import generate_c_array, generate_library
        from edgeport.mcu.toolchain.boards import board, core_of
        from edgeport.mcu.toolchain.firmware import write_integration_files
        from edgeport.targets import board_of

        notes = []
        if job.model.tflite_bytes is not None:
            tflite, float_io = job.model.tflite_bytes, False
            notes.append("generated from the given .tflite as is (its quantization is the recipe)")
        else:
            tflite, int8_notes = _int8_tflite(job)
            float_io = True
            notes += [n for n in int8_notes if not n.startswith("int8 input and output")]
        path.mkdir()
        source = source_label(job.model.source)
        storage = weight_storage(None if job.model.tflite_bytes is not None else job.recipe,
                                 self.options(job.options, target))
        info = generate_library(tflite, job.model.name, path, source=source, storage=storage)
        name = info.name  # the model's name as a C identifier ("1kws" -> "m_1kws"): every file is named by it
        generate_c_array(tflite, job.model.name, path, source=source)
        (path / f"{name}.tflite").write_bytes(tflite)
        board_name = board_of(target.name)
        _check_fits(info, board(board_name), core_of(board_name), target)
        write_integration_files(path, name, board_name)
        library = _jsonable(info)
        library["files"] = [p.relative_to(path).as_posix() for p in info.files]
        write_manifest(path, {"name": name, "model": job.model.name, "board": board_name, "float_io": float_io,
                              "input_names": [s.name for s in job.model.inputs],
                              "output_names": [s.name for s in job.model.outputs], "library": library})
        notes.append(f"library: arena {info.arena_bytes:,} B (static), weights {info.weight_bytes:,} B (const), "
                     f"{info.macs:,} MACs per inference")
        notes += _storage_notes(info)
        if info.tables:
            notes.append(f"{len(info.tables)} group(s) of float ops the int8 model keeps (e.g. a PReLU) computed as "
                         f"int8 tables of LiteRT's float results: {info.tables[0]}"
                         + (f" (+{len(info.tables) - 1} more in edgeport.json)" if len(info.tables) > 1 else ""))
        if storage is not None and (storage.palette or storage.sparse):
            notes += _stage_notes(tflite, source)
        # per-layer numerics compare the library's .tflite with a float one of the same module
        reference = None if job.model.tflite_bytes is not None else \
            _float_reference(job, path.parent.parent / f".reference-{target.name}" / f"{name}.tflite")
        return Artifact(target.name, self.format, path, job.recipe.describe() if not job.model.tflite_bytes
                        else "int8 as in the .tflite", notes=notes, layers_reference=reference)

    def read_params(self, path: Path, plan) -> dict | None:
        """The library's constants come from its .tflite: read the recipe's numbers back from it."""
        from edgeport.exporters.tflite import TFLiteExporter

        return TFLiteExporter().read_params(path / f"{read_manifest(path)['name']}.tflite", plan)

    def describe(self, path: Path) -> dict | None:
        info = read_manifest(path)["library"]
        # flash bytes by how the filters are stored (packed 1-bit, palette, CSR, ...); the rest of
        # the const data (dense filters, biases, requantization tables) is int8 / int32 as is
        by_kind: dict[str, int] = {}
        for tensor in info.get("weight_storage", []):
            if tensor["format"] != "dense":
                by_kind[tensor["format"]] = by_kind.get(tensor["format"], 0) + tensor["stored_bytes"]
        by_kind = {"int8 const (flash)": info["weight_bytes"] - sum(by_kind.values()), **by_kind}
        return {"ops": info["ops"], "weight_bytes": by_kind, "arena_bytes": info["arena_bytes"], "macs": info["macs"]}


def _storage_notes(info) -> list[str]:
    """One line on how the weights are stored, when some tensor is not dense int8."""
    compressed = [t for t in getattr(info, "weight_storage", []) if t.get("format", "dense") != "dense"]
    if not compressed:
        return []
    stored = sum(t["stored_bytes"] for t in compressed)
    dense = sum(t["dense_bytes"] for t in compressed)
    formats = ", ".join(sorted({t["format"] for t in compressed}))
    return [f"compressed weights ({formats}, decoded {compressed[0].get('decode', 'kernel')}): "
            f"{len(compressed)} tensors, {stored:,} B instead of {dense:,} B int8 ({dense / max(stored, 1):.1f}x)"]


def _stage_notes(tflite: bytes, source: str) -> list[str]:
    """Deep Compression's table for this model's weights: bytes after each stage."""
    from edgeport.mcu.compiler.storage import stage_totals, storage_stages

    totals = stage_totals(storage_stages(tflite, source))
    dense = totals["dense"]
    stages = " -> ".join(f"{stage} {totals[stage]:,} B ({dense / max(totals[stage], 1):.1f}x)"
                         for stage in ("pruned", "clustered", "huffman"))
    return [f"Deep Compression stages of the int8 weights: dense {dense:,} B -> {stages} "
            f"(biases {totals['bias_bytes']:,} B not included)"]


def _int8_tflite(job: ExportJob) -> tuple[bytes, list[str]]:
    """The recipe's int8 TFLite model (integer I/O), converted once per export for all boards."""
    if "int8_tflite" not in job.cache:
        from edgeport.exporters.tflite import int8_tflite, mixed_int8_tflite
        from edgeport.exporters.tflite_names import shorten_names
        from edgeport.quiet import quiet

        with quiet():
            data, notes = mixed_int8_tflite(job) if job.plan.precisions else int8_tflite(job)
        job.cache["int8_tflite"] = shorten_names(data), notes  # tensors named by module path, as android's
    return job.cache["int8_tflite"]


def _float_reference(job: ExportJob, out: Path):
    """Writes, when `--layers` asks, the float .tflite of the module the library's int8 .tflite was
    made from (per-layer numerics compare the two); the library and its files are left as they are."""

    def write() -> Path:
        if not out.exists():
            from edgeport.exporters.tflite import float_tflite
            from edgeport.exporters.tflite_names import shorten_names
            from edgeport.quiet import quiet

            with quiet():
                data = shorten_names(float_tflite(job))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        return out

    return write


def _check_fits(info, spec, core, target: Target) -> None:
    """Refuse, with the sizes, a model that cannot fit the board (before any build). The RAM
    figure adds the stack and heap the firmware reserves on this core (see
    edgeport.mcu.toolchain.boards); the board's RAM is capped by what its QEMU machine has, since
    the checks run there."""
    flash_needed = info.weight_bytes + CODE_ALLOWANCE
    flash = min(spec.flash_bytes, core.flash.length)
    if flash_needed > flash:
        raise InputError(f"{target.name}: the model does not fit: weights {info.weight_bytes:,} B + code "
                         f"~{CODE_ALLOWANCE:,} B > flash {flash:,} B")
    ram = min(spec.ram_bytes, core.ram.length)
    ram_needed = info.arena_bytes + core.stack_bytes + core.heap_bytes
    if ram_needed > ram:
        where = "" if ram == spec.ram_bytes else f" (QEMU {core.qemu_machine}, which runs the checks)"
        raise InputError(f"{target.name}: the model does not fit: arena {info.arena_bytes:,} B + stack "
                         f"{core.stack_bytes:,} B + heap {core.heap_bytes:,} B > RAM {ram:,} B{where}")


def _jsonable(info) -> dict:
    data = asdict(info) if hasattr(info, "__dataclass_fields__") else dict(info)
    return json.loads(json.dumps(data, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
