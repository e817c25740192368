"""Cases (a seed file, one mutation, the edgeport command reading it) and running them in forked
children (see the package docstring)."""

from __future__ import annotations

import os
import random
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fuzzing.mutate import (KWS, MAX_RSS_MB, TIMEOUT_S, mutate_bytes, mutate_npz, mutate_onnx, mutate_toml,
                            mutate_tflite, seed)

# ------------------------------------------------------------------ cases

@dataclass
class Case:
    """One fuzz input and the edgeport command that reads it (paths relative to the case folder)."""

    index: int
    kind: str
    what: str
    files: dict[str, bytes]
    argv: list[str]
    setup: list = field(default_factory=list, repr=False)  # callables(folder) making links etc.


ONNX_ARGS = ["--target", "onnx", "--runs", "2", "--warmup", "0"]
TFLITE_ARGS = ["--target", "cortex-m4"]


def make_case(seed_: int, index: int, heavy: float = 0.15) -> Case:
    """Case `index` of the run seeded `seed_`. `heavy` is the share of cases on the 50 KB KWS model
    (Cortex-M builds of big models take seconds each)."""
    rng = random.Random(f"{seed_}:{index}")
    kind = rng.choices(["onnx", "qdq", "tflite", "npz", "toml", "path"], [30, 12, 40, 8, 6, 4])[0]
    if kind in ("onnx", "qdq"):
        base = seed("tiny.onnx" if kind == "onnx" else "qdq.onnx")
        files: dict[str, bytes] = {}
        if rng.random() < 0.3:
            data, what = mutate_bytes(rng, base)
        else:
            holder = _Holder()
            data, what = mutate_onnx(rng, base, holder.folder)
            files.update(holder.files())
        files["model/model.onnx"] = data
        argv = ["export", "model/model.onnx", *ONNX_ARGS]
        if kind == "qdq" or rng.random() < 0.2:
            files["data.npz"] = seed("data.npz")
            argv += ["--eval", "data.npz"]
        return Case(index, kind, what, files, argv + ["--out", "out"])
    if kind == "tflite":
        name = "kws.tflite" if rng.random() < heavy else "tiny.tflite"
        data, what = mutate_bytes(rng, seed(name)) if rng.random() < 0.35 else mutate_tflite(rng, seed(name))
        return Case(index, kind, f"{name}: {what}", {"model.tflite": data},
                    ["export", "model.tflite", *TFLITE_ARGS, "--out", "out"])
    if kind == "npz":
        data, what = mutate_npz(rng)
        files = {"model/model.onnx": seed("tiny.onnx"), "data.npz": data}
        flag = rng.choice(["--eval", "--calib"])
        quant = ["--quantize", "int8"] if flag == "--calib" else []
        return Case(index, kind, f"{flag} {what}", files,
                    ["export", "model/model.onnx", *ONNX_ARGS, *quant, flag, "data.npz", "--out", "out"])
    if kind == "toml":
        data, what = mutate_toml(rng, "model/model.onnx", "out")
        files = {"model/model.onnx": seed("tiny.onnx"), "data.npz": seed("data.npz"), "edgeport.toml": data}
        return Case(index, kind, what, files, ["export", "--config", "edgeport.toml"])
    return _path_case(rng, index)


class _Holder:
    """Collects the side files (external data, links) an ONNX mutation writes beside the model."""

    def __init__(self):
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="fuzz-holder-"))
        self.folder = self.root / "model"
        self.folder.mkdir()

    def files(self) -> dict[str, bytes]:
        import shutil

        found = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_symlink():
                found[str(p.relative_to(self.root))] = b"@symlink:" + os.fsencode(os.readlink(p)).replace(
                    os.fsencode(str(self.root)), b"{root}")
            elif p.is_file():
                linked = p.stat().st_nlink > 1 and p.name == "hard.bin"
                found[str(p.relative_to(self.root))] = b"@hardlink:outside.bin" if linked else p.read_bytes()
        shutil.rmtree(self.root)
        return found


def _path_case(rng: random.Random, index: int) -> Case:
    """Hostile paths: odd names for the model, the data and --out."""
    model = rng.choice(["model/m odel.onnx", "model/-dash.onnx", "model/ü.onnx", "model/" + "x" * 250 + ".onnx",
                        "model/new\nline.onnx", "model/dir.onnx/", "model/fifo.onnx", "model/missing.onnx"])
    out = rng.choice(["out", "out/../out2", "out with space", "-out", "out/" + "y" * 300, "model/model.onnx/out"])
    files = {} if model.endswith(("/", "fifo.onnx", "missing.onnx")) else {model: seed("tiny.onnx")}
    if model.endswith("dir.onnx/"):
        files["model/dir.onnx/inner"] = b""
    if "model/model.onnx/" in out:
        files["model/model.onnx"] = seed("tiny.onnx")
    if model.endswith("fifo.onnx"):
        files["model/fifo.onnx"] = b"@fifo"
    return Case(index, "path", f"model {model!r} out {out!r}", files,
                ["export", model.rstrip("/"), *ONNX_ARGS, "--out", out])


def write_case(case: Case, folder: Path) -> None:
    """Write the case's files under `folder` (links and FIFOs from their markers)."""
    for rel, data in sorted(case.files.items(), key=lambda item: item[1].startswith(b"@")):  # links last
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if data.startswith(b"@symlink:"):
            os.symlink(data[9:].replace(b"{root}", os.fsencode(str(folder))).decode(), path)
        elif data.startswith(b"@hardlink:"):
            os.link(folder / data[10:].decode(), path)
        elif data == b"@fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(data)


# ------------------------------------------------------------------ running a case

@dataclass
class Outcome:
    case: Case
    exit_code: int | None     # None: killed by a signal or a timeout
    signal: int | None
    timed_out: bool
    stderr: str
    seconds: float
    max_rss_mb: float
    leftovers: list[str]      # paths in or beside the output folder after a failed run


def _child(argv: list[str], folder: Path, log: Path) -> None:
    """Runs in the forked child: stdout/stderr to `log`, edgeport's CLI, exit with its code."""
    os.setpgid(0, 0)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    err = os.open(str(log) + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(err, 2)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    code = 3
    try:
        os.chdir(folder)
        os.environ["TMPDIR"] = str(folder / "tmp")
        import tempfile

        tempfile.tempdir = None
        from edgeport.cli import main

        code = main(argv)
    except BaseException as exc:  # noqa: BLE001 - escaping the guard is itself a finding
        import traceback

        traceback.print_exc()
        code = 99 if not isinstance(exc, SystemExit) else (exc.code if isinstance(exc.code, int) else 98)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) and 0 <= code < 256 else 97)


def run_case(case: Case, folder: Path, timeout: float = TIMEOUT_S, subprocess_run: bool = False) -> Outcome:
    """Run `case` in `folder` (made here, must not exist) in a forked child, or in a fresh
    `python -m edgeport` process when `subprocess_run`."""
    folder.mkdir(parents=True)
    (folder / "tmp").mkdir()
    write_case(case, folder)
    before = _listing(folder)
    log = folder.parent / f"{folder.name}.log"
    start = time.monotonic()
    if subprocess_run:
        import subprocess

        env = {**os.environ, "EDGEPORT_QUIET": "1", "TMPDIR": str(folder / "tmp")}
        with open(log, "wb") as out, open(str(log) + ".err", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "edgeport", *case.argv], cwd=folder, stdout=out,
                                    stderr=err, env=env, start_new_session=True)
        pid = proc.pid
    else:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(case.argv, folder, log)
    status, usage, timed_out = _wait(pid, timeout)
    seconds = time.monotonic() - start
    stderr = Path(str(log) + ".err").read_bytes().decode("utf-8", "replace")
    for p in (log, Path(str(log) + ".err")):
        p.unlink()
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    sig = -code if code is not None and code < 0 else None
    exit_code = code if code is not None and code >= 0 else None
    leftovers = [] if exit_code == 0 else sorted(set(_listing(folder)) - set(before))
    return Outcome(case, exit_code, sig, timed_out, stderr, seconds, usage.ru_maxrss / 1024 if usage else 0.0,
                   leftovers)


def _wait(pid: int, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, False
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status, usage = os.wait4(pid, 0)
            return None, usage, True
        time.sleep(0.01)


def _listing(folder: Path) -> list[str]:
    """Paths under `folder`, but hidden files directly in its tmp/ (the environment's interpreter,
    not edgeport, may leave one there)."""
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if not (p.parent == folder / "tmp" and p.name.startswith("."))]


def problems(outcome: Outcome) -> list[str]:
    """What in `outcome` breaks edgeport's promise (empty: the case is fine)."""
    found = []
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
    if outcome.timed_out:
        found.append(f"hang (> {TIMEOUT_S:.0f} s)")
    if outcome.signal:
        found.append(f"killed by signal {outcome.signal}")
    if outcome.exit_code is not None and outcome.exit_code not in (0, 1, 2):
        found.append(f"exit {outcome.exit_code}")
    if "Traceback" in outcome.stderr:
        found.append("traceback on stderr")
    if outcome.exit_code == 2 and (len(lines) != 1 or not lines[0].startswith("edgeport: error: ")):
        found.append(f"exit 2 with {len(lines)} stderr lines")
    if outcome.leftovers and outcome.exit_code != 1:  # exit 1 (a budget breached) writes its report
        found.append(f"left behind: {outcome.leftovers[:5]}")
    if outcome.max_rss_mb > MAX_RSS_MB:
        found.append(f"peak memory {outcome.max_rss_mb:.0f} MB")
    return found


def prepare_parent() -> None:
    """Import what every case uses once, before forking (children then start in milliseconds)."""
    os.environ.setdefault("EDGEPORT_QUIET", "1")
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))  # a crashing child must not write a core file
    import edgeport.cli  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    for name in ("tiny.onnx", "qdq.onnx", "tiny.tflite", "kws.tflite", "data.npz"):
        seed(name)
