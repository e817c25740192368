"""edgeport's int8 C library side by side with Arm's CMSIS-NN on Cortex-M: same model, same core,
same firmware harness, same instruction counter.

    .venv/bin/python benchmarks/mcu_vs_cmsis_nn.py                      # KWS + AD on cortex-m4
    .venv/bin/python benchmarks/mcu_vs_cmsis_nn.py --boards cortex-m4,cortex-m7,cortex-m33,cortex-m0 \\
        --models kws,ad,mbv1,resnet8

For each model and core the same int8 .tflite is built two ways: (a) edgeport's library
(`edgeport.mcu.compiler.codegen.generate_library`) and (b) a minimal library that calls CMSIS-NN
directly, op by op, with every parameter computed as TFLite Micro's CMSIS-NN kernels compute it
(`cmsis_nn_harness.py`; CMSIS-NN is compiled at run time from ../shared/third_party/cmsis-nn into a
temporary folder: nothing of it is in this repository). Both go through `firmware.build_firmware`
(same compiler, flags and -O2), run in QEMU on the same random int8 inputs and are compared
byte for byte with LiteRT's reference kernels (OpResolverType.BUILTIN_REF); one invoke of each is
counted by `icount.count_instructions` and priced with the core's cycle table. Per model and core:
MACs, instructions, estimated cycles, cycles per MAC, the edgeport / CMSIS-NN ratios, the library's
flash (code + weights + constants, from the ELF and its map: `elfsize.elf_breakdown`), its static
RAM (arena + other library data; input and output buffers are the caller's on both sides) and
whether each side is bit-exact. CMSIS-NN's DSP path (ARM_MATH_DSP) is built on cores with the DSP
extension, its plain C path on the others; the generated glue fails to compile if CMSIS-NN's
headers would select anything else.

Models: `kws` (MLPerf Tiny KWS DS-CNN), `ad` (MLPerf Tiny AD autoencoder), both from
tests/data/mlperf-tiny; `mbv1` (MobileNetV1-0.25, 96x96x3, the VWW shape) and `resnet8`
(ResNet-8, CIFAR 32x32x3, residual ADDs), built here in PyTorch with seeded random weights and
exported int8 by edgeport itself (`edgeport.export(..., targets="cortex-m4")`, calibration from a
seeded random array). Cores: cortex-m4 (mps2-an386), cortex-m7 (mps2-an500), cortex-m33
(mps2-an505), cortex-m0 (microbit: 256 KB flash and 16 KB RAM, too little for these models) and
cortex-m3 (mps2-an385: no DSP extension either, so both sides build their plain C paths, with the
room the microbit lacks).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

# this folder on the path by name: common.py changes the working directory, and edgeport imports
# this module by name (`mcu_vs_cmsis_nn:resnet8`) to export the models built here
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402  (sets up the repository root first)

from cmsis_nn_harness import NotMapped, core_tensors, generate_cmsis_library  # noqa: E402

CORE_BOARDS = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500", "cortex-m33": "mps2-an505",
               "cortex-m0": "microbit", "cortex-m3": "mps2-an385"}
DEFAULT_CMSIS_NN = ROOT.parent / "shared" / "third_party" / "cmsis-nn"
# key -> (label, .tflite in the repository, or a factory here and its input shape (C, H, W))
MODELS = {
    "kws": ("KWS DS-CNN", "tests/data/mlperf-tiny/kws_ref_model.tflite"),
    "ad": ("AD autoencoder", "tests/data/mlperf-tiny/ad01_int8.tflite"),
    "mbv1": ("MobileNetV1-0.25 96x96", ("mobilenet_v1_025", (3, 96, 96))),
    "resnet8": ("ResNet-8 CIFAR", ("resnet8", (3, 32, 32))),
}
CYCLE_MODEL = """\
Cycle model: the instruction count is exact (unicorn runs one <name>_invoke and classifies every
executed Thumb instruction: ALU, multiply, DSP MAC/SIMD, load/store, LDM/STM registers, taken
branches); cycles are that mix priced with the core's table from Arm's TRMs for zero-wait-state
memory (M4: 1 per ALU/MAC/DSP op, 2 per load/store minus 1 when a load/store follows a load,
1+N for LDM/STM/PUSH/POP, +2 per taken branch; M33 uses the M4 table; M7 = the M4 table x 0.65
for dual issue, an approximation; M3 and M0 from their own TRMs). It misses flash wait states and caches
(real parts at 80-200 MHz add 1-5 wait states on flash fetches, weights included, softened by
ART/prefetch or the M7's caches), bus contention and interlocks the table does not model, and
the interpreter's overhead of TFLite Micro (op dispatch, per-invoke bookkeeping): the CMSIS-NN
column is the kernels alone, a lower bound for TFLM + CMSIS-NN. Both columns are the same kind of
estimate from the same counter, so their ratio is the robust figure."""


# Published KWS (MLPerf Tiny v1.0 DS-CNN) latencies on a Cortex-M4 at 120 MHz (NUCLEO-L4R5ZI):
# TFLite Micro + CMSIS-NN, and ST's X-CUBE-AI / Plumerai's inference engine
PUBLISHED_KWS_M4 = {"TFLM + CMSIS-NN": 181.9, "X-CUBE-AI / Plumerai": 43.2}  # ms
PUBLISHED_CLOCK_HZ = 120e6
RESULTS: dict[tuple[str, str], dict[str, dict]] = {}  # (model key, core) -> {"edgeport": ..., "CMSIS-NN": ...}


def calibration_lines() -> list[str]:
    """The KWS M4 estimates next to the published board figures, and the factor between them."""
    measured = RESULTS.get(("kws", "cortex-m4"), {})
    ep, cm = (measured.get(side, {}).get("cycles") for side in ("edgeport", "CMSIS-NN"))
    if not ep or not cm:
        return []
    tflm = PUBLISHED_KWS_M4["TFLM + CMSIS-NN"] * 1e-3 * PUBLISHED_CLOCK_HZ
    factor = tflm / cm
    lines = ["Calibration against published KWS figures (Cortex-M4 at 120 MHz):"]
    for name, ms in PUBLISHED_KWS_M4.items():
        lines.append(f"  {name}: {ms} ms = {ms * 1e-3 * PUBLISHED_CLOCK_HZ / 1e6:.2f} M cycles (published)")
    lines += [f"  CMSIS-NN kernels, this estimate: {cm / 1e6:.2f} M cycles = {cm / PUBLISHED_CLOCK_HZ * 1e3:.1f} ms; "
              f"the board run takes {factor:.2f}x that (TFLM's interpreter, flash wait states)",
              f"  edgeport, this estimate: {ep / 1e6:.2f} M cycles = {ep / PUBLISHED_CLOCK_HZ * 1e3:.1f} ms raw; "
              f"{ep * factor / PUBLISHED_CLOCK_HZ * 1e3:.1f} ms with the same factor (an upper bound: edgeport has no "
              "interpreter, so only the wait-state part of the factor applies)"]
    return lines


# ------------------------------------------------------------------ models built here

def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, relu: bool = True):
    from torch import nn

    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


def _randomize(model, seed: int):
    """Seeded random weights that keep the signal alive through the depth (He-normal convolutions:
    PyTorch's default init shrinks it layer after layer until every input gives the same output,
    which would make the bit-exact check meaningless), random BatchNorm statistics and a classifier
    whose logits differ by a few units, so that random inputs give outputs that differ."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.1, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.3, generator=generator)
    return model.eval()


def mobilenet_v1_025(seed: int = 0):
    """MobileNetV1 width 0.25 for 96x96x3 input, 2 classes (MLPerf Tiny VWW shape), random weights."""
    import torch
    from torch import nn

    class MobileNetV1(nn.Module):
        def __init__(self, width: float = 0.25, classes: int = 2):
            super().__init__()
            plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)]
            cin = int(32 * width)
            layers = [_conv_bn(3, cin, 3, 2)]
            for cout, stride in plan:
                layers += [_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, int(cout * width), 1, 1)]
                cin = int(cout * width)
            self.features, self.pool, self.fc = nn.Sequential(*layers), nn.AvgPool2d(3), nn.Linear(cin, classes)

        def forward(self, x):
            return torch.softmax(self.fc(torch.flatten(self.pool(self.features(x)), 1)), dim=1)

    torch.manual_seed(seed)
    return _randomize(MobileNetV1(), seed)


def resnet8(seed: int = 0):
    """ResNet-8 for CIFAR 32x32x3 (MLPerf Tiny IC shape: 16/32/64 channels, residual ADDs), random weights."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.a, self.b = _conv_bn(cin, cout, 3, stride), _conv_bn(cout, cout, 3, 1, relu=False)
            self.short = nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride, relu=False)

        def forward(self, x):
            return torch.relu(self.b(self.a(x)) + self.short(x))

    class ResNet8(nn.Module):
        def __init__(self, classes: int = 10):
            super().__init__()
            self.stem = _conv_bn(3, 16, 3, 1)
            self.stages = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
            self.pool, self.fc = nn.AvgPool2d(8), nn.Linear(64, classes)

        def forward(self, x):
            return torch.softmax(self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1)), dim=1)

    torch.manual_seed(seed)
    return _randomize(ResNet8(), seed)


def load_model(key: str, tmp: Path) -> bytes:
    """The model's int8 .tflite: read from the repository, or built here and exported by edgeport."""
    source = MODELS[key][1]
    if isinstance(source, str):
        return (ROOT / source).read_bytes()
    import edgeport

    factory, shape = source
    calib = tmp / f"{key}_calib.npz"
    np.savez(calib, x=np.random.default_rng(1).uniform(-1, 1, (32, *shape)).astype(np.float32))
    out = tmp / f"{key}_export"
    # the module is importable by name: this script's folder is on sys.path
    edgeport.export(f"{Path(__file__).stem}:{factory}", targets="cortex-m4", recipe=edgeport.Recipe(quantize="int8"),
                    calib=str(calib), out=out, settings=edgeport.CheckSettings(runs=1, warmup=0))
    return (out / "cortex-m4" / factory / f"{factory}.tflite").read_bytes()


# ------------------------------------------------------------------ reference and checks

def litert_reference(tflite: bytes, core_in: int, core_out: int, count: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random int8 inputs of the model's int8 core and LiteRT's reference outputs for them.

    A float input is fed as the dequantized int8 values and the int8 tensors of the core are read
    back (all tensors preserved), so both libraries get exactly what LiteRT's core saw."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    shape = detail["shape"]
    q = np.random.default_rng(seed).integers(-128, 128, (count, *shape), dtype=np.int8)
    ins, outs = [], []
    for sample in q:
        if detail["dtype"] == np.int8:
            feed = sample
        else:  # float input: the values the model's QUANTIZE maps back to `sample`
            scale, zero = detail["quantization"] if detail["quantization"][0] else (1.0, 0)
            feed = ((sample.astype(np.float32) - zero) * np.float32(scale)).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], feed)
        interpreter.invoke()
        ins.append(interpreter.get_tensor(core_in).ravel().copy())
        outs.append(interpreter.get_tensor(core_out).ravel().copy())
    return np.stack(ins).astype(np.int8), np.stack(outs).astype(np.int8)


def _fc_fixed_point(graph, op, x: np.ndarray) -> np.ndarray:
    """A FULLY_CONNECTED as TFLite Micro's reference and CMSIS-NN compute it: int32 accumulators,
    then QuantizeMultiplier / MultiplyByQuantizedMultiplier (gemmlowp double rounding), clamped."""
    from edgeport.mcu.compiler import requant

    inp, filt, out = (graph.tensors[i] for i in (*op.inputs[:2], op.outputs[0]))
    x = np.asarray(x, np.int64).reshape(-1, filt.shape[1])
    acc = (x - inp.zero_point) @ (filt.data.astype(np.int64) - filt.zero_point).T
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        acc = acc + graph.tensors[op.inputs[2]].data
    mult, shift = requant.quantize_multipliers(requant.fc_output_scale(inp.scale, filt.scales, out.scale))
    lo, hi = requant.activation_range(op.options.get("fused_activation_function", "NONE"), out.scale, out.zero_point)
    return np.clip(requant.multiply_by_quantized_multiplier(acc, mult, shift) + out.zero_point, lo, hi).astype(np.int8)


def fc_rounding_disagreements(tflite: bytes, inputs: np.ndarray) -> tuple[int, int]:
    """How many FULLY_CONNECTED outputs LiteRT's reference (a double-precision rescale) gives
    differently from the fixed-point rescale of TFLite Micro and CMSIS-NN (`_fc_fixed_point`),
    each layer fed LiteRT's own input to it: (differing, total). This explains a CMSIS-NN
    mismatch that is a difference between the two reference implementations, not a harness bug."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgeport.mcu.compiler.tflite_ir import read_tflite

    graph = read_tflite(tflite)
    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    differ = total = 0
    if detail["dtype"] != np.int8:
        return 0, 0  # float input: the models here have none; not worth the feeding code
    for sample in inputs:
        interpreter.set_tensor(detail["index"], sample.reshape(detail["shape"]))
        interpreter.invoke()
        for op in (o for o in graph.ops if o.name == "FULLY_CONNECTED"):
            fixed = _fc_fixed_point(graph, op, interpreter.get_tensor(op.inputs[0]))
            differ += int(np.sum(fixed.ravel() != interpreter.get_tensor(op.outputs[0]).ravel()))
            total += fixed.size
    return differ, total


def fc_chain_fixed_point(tflite: bytes, inputs: np.ndarray) -> np.ndarray | None:
    """For a model made of FULLY_CONNECTED ops only (the AD autoencoder): its outputs computed
    with TFLite Micro's fixed-point arithmetic in NumPy, to check the CMSIS-NN side against; None
    for other models."""
    from edgeport.mcu.compiler.tflite_ir import read_tflite

    graph = read_tflite(tflite)
    if any(op.name != "FULLY_CONNECTED" for op in graph.ops):
        return None
    x = inputs
    for op in graph.ops:
        x = _fc_fixed_point(graph, op, x)
    return x.reshape(len(inputs), -1)


# ------------------------------------------------------------------ one side, one core

def measure(lib_dir: Path, name: str, board: str, build_dir: Path, inputs: np.ndarray, expected: np.ndarray,
            opt: str = "-O2") -> dict:
    """Build, run in QEMU, compare with LiteRT, count one invoke and size the ELF; a failing step
    is recorded as `error` (one line) and the figures measured before it are kept."""
    from edgeport.mcu.toolchain.elfsize import elf_breakdown
    from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu
    from edgeport.mcu.toolchain.icount import count_instructions

    result: dict = {}
    step = "build"
    try:
        firmware = build_firmware(lib_dir, name, board, build_dir, opt=opt)
        sizes = elf_breakdown(firmware.elf, name)
        flash, ram = sizes["flash"], sizes["ram"]
        result.update(flash=flash["weights"] + flash["code"] + flash["library_const"], code=flash["code"],
                      weights=flash["weights"], ram=ram["arena"] + ram["library_ram"])
        step = "QEMU run"
        got = run_qemu(firmware, inputs, timeout=600)
        result["outputs"] = got
        result["exact"] = bool(np.array_equal(got, expected))
        result["mismatches"] = int(np.sum(got != expected))
        step = "instruction count"
        counted = count_instructions(firmware.elf, name, board, inputs[0].tobytes())
        result.update(instructions=counted["instructions"], cycles=counted["cycles_estimate"],
                      dsp=counted["mix"].get("dsp_mac", 0) + counted["mix"].get("simd", 0))
        if not np.array_equal(counted["outputs"], got[0]):  # two emulators, one binary: must agree
            result["error"] = "unicorn's output differs from QEMU's"
    except Exception as exc:  # noqa: BLE001 - report the row, go on with the others
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        too_big = re.search(r"section `(\S+)' will not fit in region `(\w+)'", message)
        result["error"] = (f"{step} failed: does not fit the board ({too_big[1]} does not fit in {too_big[2]})"
                           if too_big else f"{step} failed: {message}")
    return result


def tflm_arena(tflite: bytes) -> int | None:
    """TFLite Micro's arena for the model (its host interpreter's recording allocator, from the
    `tflite-micro` package), None when that package is not installed. The allocator prints the
    figure from C++ to the process's stderr, so that file descriptor is redirected to read it."""
    import ctypes

    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return None
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile(mode="w+") as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            runtime.Interpreter.from_bytes(tflite, arena_size=4 << 20).print_allocations()
            libc.fflush(None)  # C's buffered streams, into the captured file
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        found = re.search(r"Arena allocation total (\d+) bytes", captured.read())
    return int(found[1]) if found else None


# ------------------------------------------------------------------ report

def _n(value) -> str:
    return "-" if value is None else f"{int(value):,}"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def _row(label: str, core: str, side: str, path: str, macs: int, r: dict) -> str:
    cycles = r.get("cycles")
    exact = {True: "yes", False: f"NO ({r.get('mismatches', 0)} B)", None: "-"}[r.get("exact")]
    return (f"{label:<24}{core:<12}{side:<10}{path:<6}{_n(macs):>11}{_n(r.get('instructions')):>13}{_n(cycles):>13}"
            f"{(f'{cycles / macs:.2f}' if cycles and macs else '-'):>8}{_n(r.get('flash')):>10}{_n(r.get('code')):>8}"
            f"{_n(r.get('weights')):>9}{_n(r.get('ram')):>9}  {exact}")


def compare(key: str, targets: list[tuple[str, str]], tmp: Path, cmsis_dir: Path, samples: int, seed: int,
            opt: str) -> list[str]:
    """Print the rows of one model on every core; returns notes for the end of the report."""
    from edgeport.mcu.compiler.codegen import generate_library
    from edgeport.mcu.compiler.tflite_ir import read_tflite
    from edgeport.mcu.toolchain import boards

    label = MODELS[key][0]
    try:
        tflite = load_model(key, tmp)
        graph = read_tflite(tflite, f"{key}.tflite")
        core_in, core_out, _ = core_tensors(graph)
        inputs, expected = litert_reference(tflite, core_in, core_out, samples, seed)
    except Exception as exc:  # noqa: BLE001 - one model missing must not hide the others
        print(f"{label:<24}model not available: {str(exc).splitlines()[0]}")
        return []
    ops = Counter(op.name for op in graph.ops)
    print(f"{label:<24}.tflite {len(tflite):,} B; ops {', '.join(f'{n} x{c}' for n, c in ops.items())}; "
          f"{len(np.unique(expected))} distinct output values over {samples} inputs")
    arena = tflm_arena(tflite)
    io_bytes = sum(graph.tensors[i].size for i in (*graph.inputs, *graph.outputs))
    notes: list[str] = []
    fc_mismatch: dict[str, np.ndarray] = {}  # core -> CMSIS-NN outputs not bit-exact, with FULLY_CONNECTED ops
    ep_lib = tmp / "edgeport" / key
    try:
        info = generate_library(tflite, key, ep_lib, source=f"{key}.tflite")
        macs, ep_error = info.macs, None
    except Exception as exc:  # noqa: BLE001
        macs, ep_error = None, f"generate_library failed: {str(exc).splitlines()[0]}"
    for core, board in targets:
        dsp = boards.CORES[core].dsp
        ep = (measure(ep_lib, info.name, board, tmp / "build" / f"{key}-{core}-edgeport", inputs, expected, opt)
              if ep_error is None else {"error": ep_error})
        cm_dir = tmp / "cmsis" / f"{key}-{'dsp' if dsp else 'c'}"
        try:
            lib = generate_cmsis_library(tflite, key, cm_dir, cmsis_dir, dsp)
            cm = measure(cm_dir, key, board, tmp / "build" / f"{key}-{core}-cmsis", inputs, expected, opt)
            if macs is not None and lib.macs != macs:
                notes.append(f"{label}: MACs differ, edgeport {macs:,} vs the CMSIS-NN harness's {lib.macs:,}")
            macs = macs or lib.macs
            calls = ", ".join(f"{k} x{c}" for k, c in Counter(lib.kernels).items())
            notes += [f"{label}: CMSIS-NN {n}" for n in lib.notes] + [f"{label}: CMSIS-NN calls {calls}"]
        except NotMapped as exc:
            cm = {"error": f"CMSIS-NN harness: {exc}"}
        except Exception as exc:  # noqa: BLE001
            cm = {"error": f"CMSIS-NN harness failed: {str(exc).splitlines()[0]}"}
        path = "DSP" if dsp else "C"
        RESULTS[(key, core)] = {"edgeport": ep, "CMSIS-NN": cm}
        print(_row(label, core, "edgeport", path, macs, ep), flush=True)
        print(_row("", "", "CMSIS-NN", path, macs, cm), flush=True)
        for side, r in (("edgeport", ep), ("CMSIS-NN", cm)):
            if "error" in r:
                print(f"{'':<36}{side}: {r['error']}")
        if dsp and cm.get("dsp") == 0:
            print(f"{'':<36}CMSIS-NN: no DSP instruction executed (expected SMLAD & co.)")
        if ep.get("cycles") is not None or cm.get("cycles") is not None:
            print(f"{'':<36}edgeport / CMSIS-NN: cycles {_ratio(ep.get('cycles'), cm.get('cycles'))}, "
                  f"instructions {_ratio(ep.get('instructions'), cm.get('instructions'))}, "
                  f"flash {_ratio(ep.get('flash'), cm.get('flash'))}, RAM {_ratio(ep.get('ram'), cm.get('ram'))}; "
                  f"DSP MAC/SIMD instructions executed: {_n(ep.get('dsp'))} vs {_n(cm.get('dsp'))}", flush=True)
        if core == targets[0][0] and ep.get("ram") is not None:  # the same RAM on every core
            print(f"{'':<36}TFLite Micro arena (tflite-micro host interpreter, I/O tensors included): "
                  + (f"{arena:,} B; edgeport RAM + its {io_bytes:,} B of I/O buffers = {ep['ram'] + io_bytes:,} B, "
                     f"{(ep['ram'] + io_bytes) / arena:.2f}x TFLM's" if arena else
                     "not measured (pip install tflite-micro)"), flush=True)
        if cm.get("exact") is False and "FULLY_CONNECTED" in ops:
            fc_mismatch[core] = cm["outputs"]
    if fc_mismatch:
        notes.append(_fc_note(label, tflite, inputs, fc_mismatch))
    return [n for i, n in enumerate(notes) if n and n not in notes[:i]]


def _fc_note(label: str, tflite: bytes, inputs: np.ndarray, outputs: dict[str, np.ndarray]) -> str:
    """Why the CMSIS-NN side is not bit-exact with LiteRT, when it is the FULLY_CONNECTED rescale."""
    differ, total = fc_rounding_disagreements(tflite, inputs)
    if not total:
        return ""
    chain = fc_chain_fixed_point(tflite, inputs)
    same = "" if chain is None else ("; CMSIS-NN's outputs equal a NumPy model of that fixed-point arithmetic on "
                                     + ", ".join(f"{core}: {'yes' if np.array_equal(chain, got) else 'NO'}"
                                                 for core, got in outputs.items()))
    return (f"{label}: CMSIS-NN not bit-exact with LiteRT on {', '.join(outputs)}: LiteRT's int8 FULLY_CONNECTED "
            "reference rescales in double precision, TFLite Micro's reference and CMSIS-NN with the fixed-point "
            "multiplier (gemmlowp double rounding); fed LiteRT's own layer inputs, the fixed-point rescale alone "
            f"changes {differ:,} of {total:,} FULLY_CONNECTED outputs{same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--boards", default="cortex-m4",
                        help="comma-separated cores or boards ("
                        + ", ".join(f"{c} = {b}" for c, b in CORE_BOARDS.items()) + ")")
    parser.add_argument("--models", default="kws,ad", help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--samples", type=int, default=20, help="random inputs compared with LiteRT (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--opt", default="-O2", help="gcc optimisation flag for both sides (default -O2, the "
                        "firmware builder's)")
    parser.add_argument("--cmsis-nn", type=Path, default=Path(os.environ.get("CMSIS_NN_DIR", DEFAULT_CMSIS_NN)),
                        help="CMSIS-NN folder (Source/, Include/); default ../shared/third_party/cmsis-nn")
    args = parser.parse_args()

    from edgeport.mcu.toolchain import boards

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    targets = []
    for item in (b.strip() for b in args.boards.split(",") if b.strip()):
        board = CORE_BOARDS.get(item, item)
        try:
            targets.append((boards.board(board).core, board))
        except Exception as exc:  # noqa: BLE001 - an unknown board: its message lists the known ones
            parser.error(str(exc))
    cmsis_dir = args.cmsis_nn.resolve()
    if not (cmsis_dir / "Source").is_dir() or not (cmsis_dir / "Include").is_dir():
        parser.error(f"{cmsis_dir} is not a CMSIS-NN folder (no Source/ and Include/)")

    print(f"edgeport C library vs Arm CMSIS-NN (Apache-2.0, from {cmsis_dir}: see its ORIGIN.md), built at run "
          f"time in a temporary folder; same harness, compiler and flags ({args.opt}), same instruction counter.")
    print(f"bit-exact: QEMU outputs on {args.samples} random int8 inputs == LiteRT BUILTIN_REF. path: DSP = CMSIS-NN's "
          "ARM_MATH_DSP code (from __ARM_FEATURE_DSP; the glue has an #error otherwise), C = its plain C code (no DSP, "
          "no MVE); edgeport's kernels pick their DSP code from __ARM_FEATURE_DSP too.")
    header = (f"{'model':<24}{'core':<12}{'library':<10}{'path':<6}{'MACs':>11}{'instructions':>13}{'est. cycles':>13}"
              f"{'cyc/MAC':>8}{'flash B':>10}{'code':>8}{'weights':>9}{'RAM B':>9}  bit-exact")
    print(header)
    print("-" * len(header))
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeport-vs-cmsis-nn-") as tmp:
        for key in models:
            notes += compare(key, targets, Path(tmp), cmsis_dir, args.samples, args.seed, args.opt)
    if notes:
        print("\nNotes:")
        for note in notes:
            print(f"  - {note}")
    print("\nflash B: the library's flash (code + weights + other constants) in the linked firmware; RAM B: its static "
          "RAM (arena incl. scratch buffers, other library data); input/output buffers are the caller's on both sides. "
          "Both from the ELF and its linker map (elfsize.elf_breakdown); harness, libc and stack are left out.")
    print()
    print(CYCLE_MODEL)
    for line in calibration_lines():
        print(line)


if __name__ == "__main__":
    main()
