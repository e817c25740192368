"""The slicing ops in the Cortex-M C library (edgeport.mcu.compiler.lowering_slicing, kernels/ep_slicing.c):
STRIDED_SLICE, SLICE, SPLIT, SPLIT_V and GATHER on int8 tensors.

LiteRT's STRIDED_SLICE index arithmetic (`strided_slice_window`) against NumPy's subscripts; then
seeded int8 graphs of each op (tests/testmodels/tflite_slicing_graphs.py) generated, compiled with
the host gcc (plain C and the DSP path emulated) and, for the graph holding every op, built for a
Cortex-M0 and a Cortex-M4 and run in QEMU, compared byte for byte with LiteRT's reference kernels;
and what the kernels do not do refused before anything is written, in one line naming the op.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgeport.errors import UnsupportedOpError
from edgeport.mcu.compiler.codegen import generate_library
from edgeport.mcu.compiler.lowering_slicing import Window, strided_slice_window
from edgeport.mcu.toolchain.firmware import build_firmware, run_qemu, toolchain_missing

from conftest import DSP_VARIANTS, check_bit_exact, litert_reference, needs_gcc, needs_litert, random_inputs
from testmodels import tflite_slicing_graphs as graphs
from testmodels.tflite_graphs import GraphBuilder

MISSING = toolchain_missing()
needs_toolchain = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
SAMPLES = 20
GRAPHS = {"strided-slice": graphs.strided_slice_graph, "split": graphs.split_graph, "gather": graphs.gather_graph,
          "all": graphs.slicing_graph}
# per graph, what its C must call: windows, contiguous copies, shared prefixes, index tables
KERNELS = {"strided-slice": {"ep_slice_s8(": 9, "ep_copy_s8(": 1, "sharing its bytes": 1},
           "split": {"ep_slice_s8(": 10, "ep_copy_s8(": 1, "sharing its bytes": 1, "read by no op": 1},
           "gather": {"ep_gather_s8(": 2, "ep_slice_s8(": 3},
           "all": {"ep_slice_s8(": 8, "ep_gather_s8(": 1, "ep_copy_s8(": 1, "read by no op": 4}}
BOARDS = ("microbit", "mps2-an386")  # Cortex-M0, Cortex-M4


@functools.cache
def model(name: str) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The graph `name`, its int8 inputs and LiteRT's reference outputs, made once."""
    tflite = GRAPHS[name]()
    inputs = random_inputs(tflite, SAMPLES)
    return tflite, inputs, litert_reference(tflite, inputs)[0]


# ------------------------------------------------------------------ LiteRT's index arithmetic

def take(window: Window, values: np.ndarray) -> np.ndarray:
    """The window applied to flat values, as ep_slice_s8 walks it."""
    grids = np.meshgrid(*(np.arange(n) for n in window.shape), indexing="ij")
    return values[window.start + sum(g * s for g, s in zip(grids, window.strides))]


SPECS = [
    (slice(None), slice(1, 5), slice(None, None, 2)),
    (1, slice(None, None, -1), 2, slice(1, 4)),
    (Ellipsis, slice(None, None, -2)),
    (None, slice(None), slice(-2, None), slice(1, None, 3)),
    (slice(None), slice(5, 0, -2), slice(-1, -8, -3), slice(4, 1, -1)),
    (slice(None), slice(-100, 100, 3), 0, Ellipsis),
    (Ellipsis, None, 2),
    (slice(1, None), Ellipsis, None, slice(None, 2), None),
    (-1, slice(6, -100, -4)),
    (slice(2, 1),),  # empty
]


def random_spec(rng: np.random.Generator, shape) -> tuple:
    """A subscript of slices (begins and ends often out of range or left out, strides -3..3) and
    indices over the first 1 to 4 dimensions."""
    def bound():
        return None if rng.random() < 0.3 else int(rng.integers(-9, 9))

    def item(size: int):
        if rng.random() < 0.25:
            return int(rng.integers(-size, size))
        return slice(bound(), bound(), int(rng.choice([-3, -2, -1, 1, 2, 3])))

    return tuple(item(size) for size in shape[:rng.integers(1, len(shape) + 1)])


@pytest.mark.parametrize("case", range(len(SPECS) + 40))
def test_strided_slice_takes_what_numpy_takes(case):
    """Masks, ellipsis, new axes, shrunk axes, negative and clamped begins, ends and strides: the
    window and the shape LiteRT computes are NumPy's subscript (the listed specs, then random ones)."""
    shape = (2, 6, 7, 5)
    spec = SPECS[case] if case < len(SPECS) else random_spec(np.random.default_rng(case), shape)
    values = np.arange(np.prod(shape))
    expected = values.reshape(shape)[spec]
    window, out_shape = strided_slice_window(shape, *graphs.slice_spec(spec))
    assert out_shape == expected.shape
    if expected.size:
        np.testing.assert_array_equal(take(window, values).reshape(out_shape), expected)


def test_strided_slice_offset_and_what_litert_does_not_write():
    """Ends given as lengths (offset); refused: a stride -1 on a shrunk axis (LiteRT writes nothing),
    stride 0, offset with ends left out (LiteRT reads past the ones given)."""
    shape = (2, 6, 7, 5)
    spec = (slice(1, 2), slice(4, 0, -2), slice(1, 6), slice(0, 5, 2))
    window, out_shape = strided_slice_window(shape, *graphs.slice_spec(spec, offset=True))
    values = np.arange(np.prod(shape))
    np.testing.assert_array_equal(take(window, values).reshape(out_shape), values.reshape(shape)[spec])
    with pytest.raises(ValueError, match="shrunk axis"):
        strided_slice_window(shape, [0, 3], [1, 4], [1, -1], {"shrink_axis_mask": 2})
    with pytest.raises(ValueError, match="stride 0"):
        strided_slice_window(shape, [0], [1], [0], {})
    with pytest.raises(ValueError, match="offset with"):
        strided_slice_window(shape, [0, 1], [2, 3], [1, 1], {"offset": True})


# ------------------------------------------------------------------ bit-exact with LiteRT

@pytest.mark.e2e
@needs_litert
@needs_gcc
@pytest.mark.parametrize("name", GRAPHS)
def test_slicing_ops_are_bit_exact_on_the_host(name, tmp_path):
    tflite, _, ref = model(name)
    assert len(np.unique(ref)) > 100, "degenerate reference outputs: the comparison would mean little"
    for variant in DSP_VARIANTS.values():
        check_bit_exact(tflite, "m", tmp_path, cflags=variant, n=SAMPLES)
    source = (tmp_path / "lib" / "m.c").read_text()
    assert {text: source.count(text) for text in KERNELS[name]} == KERNELS[name]


@pytest.mark.e2e
@needs_litert
@needs_toolchain
@pytest.mark.parametrize("board", BOARDS)
def test_slicing_ops_are_bit_exact_in_qemu(board, tmp_path):
    tflite, inputs, ref = model("all")
    assert len(np.unique(ref)) > 100
    generate_library(tflite, "m", tmp_path / "lib")
    fw = build_firmware(tmp_path / "lib", "m", board, tmp_path / "build")
    got = run_qemu(fw, inputs.reshape(len(inputs), -1))
    np.testing.assert_array_equal(got, ref.reshape(len(ref), -1))


# ------------------------------------------------------------------ refused

def _one_op(make) -> bytes:
    g = GraphBuilder(0)
    x = g.activation("input", (3, 5, 4), 0.05, 1)
    return g.build([x], [make(g, x)])


def _dangling_begin(g: GraphBuilder, x: int) -> int:
    """STRIDED_SLICE whose begin no op computes (not a constant)."""
    y = graphs.strided_slice(g, x, (slice(0, 2),))
    g.ops[-1].inputs[1] = g._add("begin_computed", (1,), "int32")
    return y


REFUSED = {
    "gather batch_dims": (lambda g, x: graphs.gather(g, x, [[1, 0], [2, 2], [0, 1]], axis=1, batch_dims=1),
                          "GATHER (batch_dims 1 (only 0))"),
    "gather negative index": (lambda g, x: graphs.gather(g, x, [0, -1], axis=1), "GATHER (index -1 outside [0, 5))"),
    "gather index past the end": (lambda g, x: graphs.gather(g, x, [5], axis=1), "GATHER (index 5 outside [0, 5))"),
    "shrunk axis reversed": (lambda g, x: _reversed_shrink(g, x), "STRIDED_SLICE (a shrunk axis with nothing"),
    "begin not constant": (_dangling_begin, "STRIDED_SLICE (begin not constant)"),
    "uneven split": (lambda g, x: graphs.split(g, x, 1, 2)[0], "SPLIT (5 values do not split evenly in 2)"),
    "empty split_v output": (lambda g, x: graphs.split_v(g, x, [0, -1], 2)[1], "SPLIT_V (empty output)"),
}


def _reversed_shrink(g: GraphBuilder, x: int) -> int:
    """x[:, 2] with stride -1 on the shrunk axis (LiteRT leaves the output unwritten)."""
    y = graphs.strided_slice(g, x, (slice(None), 2))
    g.buffers[g.tensors[g.ops[-1].inputs[3]].buffer].data = np.frombuffer(np.array([1, -1], np.int32).tobytes(),
                                                                          np.uint8)
    return y


@needs_litert
@pytest.mark.parametrize("case", REFUSED)
def test_unsupported_configurations_are_refused_in_one_line(case, tmp_path):
    make, message = REFUSED[case]
    with pytest.raises(UnsupportedOpError) as err:
        generate_library(_one_op(make), "m", tmp_path / "lib")
    text = str(err.value)
    assert "\n" not in text and message in text, text
    assert not (tmp_path / "lib").exists()


@needs_litert
def test_litert_refuses_the_indices_edgeport_refuses():
    """A negative GATHER index fails LiteRT's invoke: there is no output to match."""
    tflite = _one_op(lambda g, x: graphs.gather(g, x, [0, -1], axis=1))
    with pytest.raises(RuntimeError):
        litert_reference(tflite, random_inputs(tflite, 1))
