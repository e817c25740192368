"""Cortex-M figures on the MLPerf Tiny reference models (KWS DS-CNN, AD autoencoder).

    .venv/bin/python benchmarks/mcu_mlperf_tiny.py [--boards cortex-m4,cortex-m7]

For each model and core: the C library's flash (total library, weights, code) and RAM (arena,
library total) read from the firmware ELF, instructions per inference counted exactly by
unicorn, estimated cycles from the core's cycle table and cycles per MAC, and whether the QEMU
run was bit-exact with LiteRT's reference kernels on 20 random inputs. The arena is compared with
TFLite Micro's for the same model (measured with the TFLM host interpreter, see
../shared/models/README.md) with the input and output buffers added (TFLM's arena holds them;
edgeport's `<name>_invoke` reads and writes the caller's buffers), and the library's flash with
the .tflite size + 16 KB.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT  # noqa: E402  (sets up the repository root first)

import edgeport  # noqa: E402

MODELS = {
    "KWS DS-CNN": ("tests/data/mlperf-tiny/kws_ref_model.tflite", 24_272),
    "AD autoencoder": ("tests/data/mlperf-tiny/ad01_int8.tflite", 3_984),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="cortex-m4,cortex-m7")
    args = parser.parse_args()
    header = (f"{'model':<16}{'core':<11}{'lib flash':>10}{'weights':>9}{'code':>8}{'≤ tfl+16K':>10}"
              f"{'arena':>8}{'+I/O':>8}{'/TFLM':>7}{'lib RAM':>9}{'instr':>11}{'cycles':>11}{'cyc/MAC':>8}{'ms@clk':>9}"
              f"{'bit-exact':>10}")
    print("C library in QEMU; instructions counted by unicorn; cycles and ms are estimates (cycle tables)")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for label, (path, tflm_arena) in MODELS.items():
            tflite_bytes = (ROOT / path).stat().st_size
            report = edgeport.export(path, targets=args.boards, out=Path(tmp, label.replace(" ", "_")),
                                     settings=edgeport.CheckSettings(runs=1, warmup=0))
            for t in report.targets:
                fw, lat, exact = t.values("firmware"), t.values("latency"), t.values("bit_exact")
                flash, ram = fw.get("flash", {}), fw.get("ram", {})
                lib_flash = fw.get("library_flash_bytes")
                print(f"{label:<16}{t.target:<11}{_n(lib_flash):>10}{_n(flash.get('weights')):>9}"
                      f"{_n(flash.get('code')):>8}{_yes(lib_flash is not None and lib_flash <= tflite_bytes + 16384):>10}"
                      f"{_n(ram.get('arena')):>8}{_n(_with_io(ram, report)):>8}"
                      f"{_r(_with_io(ram, report), tflm_arena):>7}"
                      f"{_n(fw.get('library_ram_bytes')):>9}{_n(lat.get('instructions')):>11}"
                      f"{_n(lat.get('cycles_estimate')):>11}{_f(lat.get('cycles_per_mac'), '.2f'):>8}"
                      f"{_f(lat.get('estimated_ms'), '.2f'):>9}{_yes(exact.get('bit_exact')):>10}", flush=True)
            print(f"{'':<16}(.tflite {tflite_bytes:,} B, TFLM arena {tflm_arena:,} B)")


def _with_io(ram: dict, report) -> int | None:
    """The arena plus the input and output buffers, which TFLM's arena holds and edgeport's API
    leaves to the caller: the like-for-like RAM figure."""
    if "arena" not in ram:
        return None
    io = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in report_specs(report))
    return ram["arena"] + io


def report_specs(report):
    from edgeport.sources import load_source

    model = load_source(report.source)
    return [*model.inputs, *model.outputs]


def _n(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _f(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _r(value, base) -> str:
    return "n/a" if value is None else f"{value / base:.2f}"


def _yes(value) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


if __name__ == "__main__":
    main()
