"""Fuzz edgeport with thousands of mutated inputs (issue #14) and print a summary.

    .venv/bin/python benchmarks/fuzz.py [--cases 2000] [--seed 14] [--workers 2] [--timeout 60]

Cases come from `tests/fuzzing.py` (mutated .onnx / QDQ .onnx / .tflite / .npz / TOML inputs and
hostile paths; deterministic from the seed). Each runs `edgeport export` in a forked child of a
worker that imported edgeport once. The summary counts exit codes, tracebacks, signals, hangs,
partial outputs (anything left in or beside the output folder after a failed run), exit-2
messages longer than one line, peak memory and time; every case that broke a promise is listed
with what reproduces it (`fuzzing.make_case(seed, index)`). Exit status 1 when any did.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fuzzing  # noqa: E402

_folder: Path | None = None


def _init(root: str) -> None:
    global _folder
    _folder = Path(root)
    fuzzing.prepare_parent()


def _run(job: tuple[int, int, float]) -> dict:
    seed, index, timeout = job
    case = fuzzing.make_case(seed, index)
    folder = _folder / f"case{index}"
    outcome = fuzzing.run_case(case, folder, timeout=timeout)
    shutil.rmtree(folder, ignore_errors=True)
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
    return {"index": index, "kind": case.kind, "what": case.what, "argv": case.argv, "exit": outcome.exit_code,
            "signal": outcome.signal, "hang": outcome.timed_out, "traceback": "Traceback" in outcome.stderr,
            "lines": len(lines), "leftovers": bool(outcome.leftovers) and outcome.exit_code != 1,
            "rss_mb": outcome.max_rss_mb, "seconds": outcome.seconds, "problems": fuzzing.problems(outcome),
            "last": (lines or [""])[-1][:240]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=fuzzing.TIMEOUT_S)
    parser.add_argument("--start", type=int, default=0, help="first case index")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="edgeport-fuzz-")
    start = time.monotonic()
    jobs = [(args.seed, i, args.timeout) for i in range(args.start, args.start + args.cases)]
    results = []
    try:
        with multiprocessing.get_context("fork").Pool(args.workers, initializer=_init, initargs=(root,)) as pool:
            for n, result in enumerate(pool.imap_unordered(_run, jobs, chunksize=4), 1):
                results.append(result)
                if n % 200 == 0:
                    print(f"  {n}/{len(jobs)} cases, {time.monotonic() - start:.0f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - start

    exits = collections.Counter("signal" if r["signal"] else "hang" if r["hang"] else r["exit"] for r in results)
    kinds = collections.Counter(r["kind"] for r in results)
    bad = sorted((r for r in results if r["problems"]), key=lambda r: r["index"])
    print(f"edgeport fuzz: seed {args.seed}, cases {args.start}..{args.start + len(results) - 1}")
    print(f"  cases:               {len(results)}  ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
    print(f"  exit codes:          {', '.join(f'{k}: {v}' for k, v in sorted(exits.items(), key=str))}")
    print(f"  tracebacks:          {sum(r['traceback'] for r in results)}")
    print(f"  signals:             {sum(bool(r['signal']) for r in results)}")
    print(f"  hangs (> {args.timeout:.0f} s):     {sum(r['hang'] for r in results)}")
    print(f"  partial outputs:     {sum(r['leftovers'] for r in results)}")
    print(f"  multi-line exit 2:   {sum(r['exit'] == 2 and r['lines'] != 1 for r in results)}")
    print(f"  exit 3 (internal):   {exits.get(3, 0)}")
    print(f"  peak memory:         {max((r['rss_mb'] for r in results), default=0):.0f} MB (limit "
          f"{fuzzing.MAX_RSS_MB} MB)")
    print(f"  slowest case:        {max((r['seconds'] for r in results), default=0):.1f} s")
    print(f"  time:                {elapsed:.0f} s ({args.workers} workers)")
    print(f"  broken promises:     {len(bad)}")
    for r in bad:
        print(f"    case {r['index']} [{r['kind']}] {r['what'][:100]}: {r['problems']} | {r['last']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
