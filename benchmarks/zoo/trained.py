"""Trained models that ship inside PyPI wheels, read as `.onnx` sources (nothing downloaded).

The files are located with importlib (the packages are installed by the `zoo` extra; they are
never imported, only their files read):

- nudenet 3.4.2: `320n.onnx`, a YOLOv8n nudity detector (SiLU, Split, Resize, Softmax).
- rapidocr-onnxruntime 1.4.4: PaddleOCR's PP-OCRv4 text detector (DBNet, ConvTranspose), text
  recognizer (SVTR: a trained transformer) and the mobile direction classifier.
- silero-vad 6.2.3: the 16 kHz voice activity detector (a trained LSTM behind `If` nodes that pick
  the sample rate; scalar int64 `sr`, state with its batch on axis 1) and its sequence export
  (plain LSTM, three float inputs, three outputs).
- ddddocr 1.6.1: `common.onnx`, a captcha recognizer (CNN + LSTM, CTC ids out).

Inputs: photos and rendered text from `data`; for the VAD, chunks of synthetic speech with the
recurrent state the model itself produces on the chunks before (run here with onnxruntime), as a
stream would feed it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from benchmarks.zoo import data
from benchmarks.zoo._common import Entry, Input

VAD_CHUNK = 512  # samples per call at 16 kHz (32 ms)
VAD_CONTEXT = 64  # samples of the previous chunk the sequence model takes in front


def package_file(package: str, relative: str) -> str:
    """Path of a file inside an installed package, without importing it (a path naming the missing
    package when it is not installed: `Entry.missing` then says so)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return f"<{package} not installed: pip install -e .[zoo]>/{relative}"
    return str(Path(spec.submodule_search_locations[0]) / relative)


def _photos(rng, count):
    return {"images": data.images(rng, count, 320, 320, normalize="unit")}


def _pages(rng, count):
    return {"x": data.documents(rng, count, 128, 256)}


def _rec_lines(rng, count):
    return {"x": data.text_lines(rng, count, 48, 320)}


def _cls_lines(rng, count):
    return {"x": data.text_lines(rng, count, 48, 192)}


def _captchas(rng, count):
    return {"input1": data.captchas(rng, count, 64, 160)}


def _stream_states(path: str, chunks: np.ndarray, feeds) -> list[list[np.ndarray]]:
    """Run the VAD over consecutive chunks; the states it carries into each chunk."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    state, states = None, []
    for chunk in chunks:
        feed, state = feeds(chunk, state)
        states.append(state)
        state = session.run(None, feed)[1:]
    return states


def _vad_stream(rng, count, context: int):
    """`count` consecutive chunks of speech (with `context` samples of the previous chunk)."""
    audio = data.speech(rng, 1, VAD_CHUNK * (count + 1))[0]
    return np.stack([audio[VAD_CHUNK * (i + 1) - context:VAD_CHUNK * (i + 2)] for i in range(count)])


def _vad(rng, count):
    # the 16 kHz model takes 64 samples of the previous chunk in front of each 512 (as silero-vad's
    # own wrapper feeds it); without them it answers about 0.001 on speech
    chunks = _vad_stream(rng, count, VAD_CONTEXT)
    rate = np.array(data.SAMPLE_RATE, np.int64)

    def feeds(chunk, carried):
        state = carried[0] if carried else np.zeros((2, 1, 128), np.float32)
        return {"input": chunk[None], "state": state, "sr": rate}, [state]
    states = _stream_states(SILERO_VAD, chunks, feeds)
    return {"input": chunks, "state": np.stack([s[0] for s in states]),
            "sr": np.full(count, data.SAMPLE_RATE, np.int64)}


def _vad_sequence(rng, count):
    chunks = _vad_stream(rng, count, VAD_CONTEXT)

    def feeds(chunk, carried):
        h, c = carried if carried else (np.zeros((1, 1, 128), np.float32),) * 2
        return {"input": chunk[None], "h": h, "c": c}, [h, c]
    states = _stream_states(SILERO_VAD_SEQUENCE, chunks, feeds)
    return {"input": chunks, "h": np.concatenate([s[0] for s in states]),
            "c": np.concatenate([s[1] for s in states])}


NUDENET = package_file("nudenet", "320n.onnx")
PPOCR_DET = package_file("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx")
PPOCR_REC = package_file("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx")
PPOCR_CLS = package_file("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
SILERO_VAD = package_file("silero_vad", "data/silero_vad_16k_op15.onnx")
SILERO_VAD_SEQUENCE = package_file("silero_vad", "data/silero_vad_16k_sequence.onnx")
DDDDOCR = package_file("ddddocr", "common.onnx")

ENTRIES = [
    Entry("nudenet_320n", "trained", NUDENET, "nudenet==3.4.2", (Input("images", (1, 3, 320, 320)),), _photos),
    Entry("ppocr_v4_det", "trained", PPOCR_DET, "rapidocr-onnxruntime==1.4.4", (Input("x", (1, 3, 128, 256)),),
          _pages),
    Entry("ppocr_v4_rec", "trained", PPOCR_REC, "rapidocr-onnxruntime==1.4.4", (Input("x", (1, 3, 48, 320)),),
          _rec_lines),
    Entry("ppocr_mobile_cls", "trained", PPOCR_CLS, "rapidocr-onnxruntime==1.4.4",
          (Input("x", (1, 3, 48, 192)),), _cls_lines),
    Entry("silero_vad_16k", "trained", SILERO_VAD, "silero-vad==6.2.3",
          (Input("input", (1, VAD_CHUNK + VAD_CONTEXT)), Input("state", (2, 1, 128)), Input("sr", (), "int64")),
          _vad,
          outputs=2),
    Entry("silero_vad_16k_sequence", "trained", SILERO_VAD_SEQUENCE, "silero-vad==6.2.3",
          (Input("input", (1, VAD_CHUNK + VAD_CONTEXT)), Input("h", (1, 1, 128)), Input("c", (1, 1, 128))),
          _vad_sequence, outputs=3),
    Entry("ddddocr_common", "trained", DDDDOCR, "ddddocr==1.6.1", (Input("input1", (1, 1, 64, 160)),),
          _captchas),
]


def pin_input_dims(entry: Entry, folder) -> Path:
    """A copy of `entry`'s ONNX file in `folder` whose dynamic input dims (symbolic, or written as
    -1 as paddle2onnx does) are the data's, the batch axis left dynamic (and -1 output dims symbolic). Today edgeport needs fixed
    dims (issue #15 deliverable 3); the benchmark's `--adapt-inputs` and the tests use this copy."""
    import onnx

    model = onnx.load(entry.source)
    shapes = {i.name: i.shape for i in entry.inputs}
    for value in model.graph.input:
        if value.name not in shapes:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            fixed = dim.HasField("dim_value") and dim.dim_value > 0
            if axis == 0 and not fixed:
                dim.dim_param = "batch"
            elif axis < len(shapes[value.name]) and not fixed:
                dim.dim_value = shapes[value.name][axis]
    for value in model.graph.output:  # -1 output dims become symbolic ones
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value <= 0:
                dim.dim_param = f"{value.name}_{axis}"
    path = Path(folder) / f"{entry.name}.onnx"
    onnx.save(model, str(path))
    return path
