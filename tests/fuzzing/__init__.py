"""A deterministic mutation fuzzer for edgeport's inputs: `.onnx`, `.tflite`, `.npz` and TOML.

`cases(seed, count)` yields `Case`s: a seed file (small models built here, or the MLPerf Tiny KWS
model), one mutation (byte level: truncation, bit flips, zeroed regions, spliced chunks; or
structural: an edit of a protobuf / flatbuffer field through the `onnx` API and the TFLite schema
classes of ai-edge-litert, such as NaN scales, out-of-range zero points, tensor index -1, TiB-sized
declared inputs, non-UTF-8 names, external data escaping the model's folder), and the command that
feeds it to edgeport. Everything is drawn from `random.Random(seed)`: a case reproduces from its
seed and index alone.

`run_case(case, folder)` runs the command in a forked child of this process (so edgeport and its
backends are imported once; the child is a real process with its own stderr, exit status, process
group and memory) and returns an `Outcome`; `problems(outcome)` lists what broke edgeport's promise:
an exit outside {0, 1, 2}, a traceback, a signal, a hang, more than one stderr line on exit 2,
anything left in or beside the output folder after a failure, too much memory.

Used by `tests/test_fuzz.py` (a few hundred cases in CI) and `benchmarks/fuzz.py` (thousands).
"""

from fuzzing.cases import Case, Outcome, make_case, prepare_parent, problems, run_case  # noqa: F401
from fuzzing.mutate import MAX_RSS_MB, TIMEOUT_S, qdq_onnx, seed, tiny_onnx, tiny_tflite  # noqa: F401
