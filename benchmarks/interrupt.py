"""Ctrl-C at N evenly spaced moments of a 12-target export (issue #14's signal acceptance).

    .venv/bin/python benchmarks/interrupt.py [--moments 20] [--signal INT|TERM] \
        [--config samples/digits/edgeport.toml] [--quantize RECIPE] [--to group|process] [--keep]

First the main job (`edgeport export --config ... --out <tmp>/run/out --quiet`) runs once to fill
the output folder, then once more to time it warm: T (the first run pays one-time costs, torch's
compile cache among them, and takes about twice as long; with --no-warm T is the first run's and
the late moments fall after the end). Then, for k = 1..N, the same export (or, with --quantize,
another recipe) runs again in its own session and gets the signal at k*T/(N+1) s: SIGINT goes to
its whole process group, as a terminal's Ctrl-C does (`--to process`: the edgeport process only),
SIGTERM to the edgeport process, as `kill PID` does. Each moment must give:

- exit 130 (SIGINT) / 143 (SIGTERM), within --timeout;
- exactly one stderr line, edgeport's "interrupted / terminated ... during <stage>", no traceback;
- the output folder byte for byte as before (every path, every file's bytes);
- nothing beside it (no `.out.edgeport-*` work folder, no other new entry in its parent folder)
  and nothing new in the run's own TMPDIR (what a complete run leaves there, library caches such
  as torchinductor_<user>, is kept and not counted);
- no process the run started still alive a few seconds later: processes are followed while the
  run lasts (descendants of the edgeport process, its session) and recognized afterwards by a
  marker in their environment, so other work on the machine does not count.

One row per moment, then the summary; exit status 1 when any moment broke a promise. A moment
whose signal came after the run had written its output (exit 0/1, the output replaced: a complete
export, not an interruption) is counted as late, and as not passed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import ROOT  # noqa: E402  (sets up the repository root first)

EDGEPORT = ROOT / ".venv" / "bin" / "edgeport"
MARKER = "EDGEPORT_INTERRUPT_PROBE"
SIGNALS = {"INT": (signal.SIGINT, 130, "interrupted (SIGINT)"), "TERM": (signal.SIGTERM, 143, "terminated (SIGTERM)")}
POLL_S = 0.1


# ---------------------------------------------------------------------------------------------
# the output folder and what is beside it


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with its kind and content (file bytes, link target)."""
    shot: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                shot[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                shot[rel] = ("dir",)
            else:
                shot[rel] = ("file", path.read_bytes())
    return shot


def differences(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    changed = [f"-{p}" for p in sorted(before.keys() - after.keys())]
    changed += [f"+{p}" for p in sorted(after.keys() - before.keys())]
    changed += [f"~{p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    return changed


def restore(folder: Path, shot: dict[str, tuple]) -> None:
    """Put the output folder back as it was (after a failed moment, so the next one starts equal)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for rel, entry in sorted(shot.items()):
        path = folder / rel
        if entry[0] == "dir":
            path.mkdir(exist_ok=True)
        elif entry[0] == "link":
            os.symlink(entry[1], path)
        else:
            path.write_bytes(entry[1])


def clear(folder: Path, keep: set[str], stash: Path | None = None) -> list[str]:
    """Remove (and name) every entry of `folder` not in `keep`; into `stash` when given."""
    left = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    for name in left:
        path = folder / name
        if stash is not None:
            stash.mkdir(parents=True, exist_ok=True)
            shutil.move(path, stash / name)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return left


# ---------------------------------------------------------------------------------------------
# processes: /proc, so nothing beyond the standard library is needed


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(comm, ppid, session, start time) of `pid`, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None  # a zombie holds nothing but its exit status
    return comm, int(fields[1]), int(fields[3]), int(fields[19])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _has_marker(pid: int, token: bytes) -> bool:
    try:
        return token in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class Watcher(threading.Thread):
    """Follows the processes a run starts (descendants of its root, members of its session)
    while it lasts; `alive()` lists those still running afterwards."""

    def __init__(self, root: int, token: bytes):
        super().__init__(daemon=True)
        self.root, self.token = root, token
        self.seen: dict[tuple[int, int], str] = {}  # (pid, start time) -> name
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.scan()
            self.done.wait(POLL_S)

    def scan(self) -> None:
        table = {pid: s for pid in _pids() if (s := _stat(pid))}
        family = {self.root}
        grew = True
        while grew:  # descendants by parent links (the table is small: a few hundred processes)
            new = {pid for pid, s in table.items() if s[1] in family and pid not in family}
            family |= new
            grew = bool(new)
        for pid, (comm, _ppid, session, start) in table.items():
            if pid != self.root and (pid in family or session == self.root):
                self.seen[(pid, start)] = comm

    def alive(self) -> dict[int, str]:
        """Processes of this run still alive: followed ones (same pid and start time), its
        session, or any carrying its environment marker (those that escaped into a session of
        their own before the watcher saw them)."""
        left = {}
        for pid in _pids():
            s = _stat(pid)
            if s is None or pid == os.getpid():
                continue
            comm, _ppid, session, start = s
            if (pid, start) in self.seen or session == self.root or _has_marker(pid, self.token):
                left[pid] = comm
        return left


def kill_all(pids: dict[int, str]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# one run


def command(config: str, out: Path, quantize: str | None) -> list[str]:
    cmd = [str(EDGEPORT), "export", "--config", config, "--out", str(out), "--quiet"]
    return cmd + (["--quantize", quantize] if quantize else [])


def environment(tmp: Path, token: str) -> dict[str, str]:
    env = dict(os.environ, TMPDIR=str(tmp), **{MARKER: token})
    env.pop("EDGEPORT_QUIET", None)  # --quiet says it; the rest is as a user's shell has it
    return env


def run_moment(cmd, env, delay: float | None, signum: int, to_group: bool, timeout: float, grace: float):
    """Start `cmd`, send `signum` after `delay` s; return what happened."""
    token = env[MARKER].encode()
    stderr = tempfile.TemporaryFile()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr, start_new_session=True)
    watcher = Watcher(proc.pid, MARKER.encode() + b"=" + token)
    watcher.start()
    sent_at = None
    hung = False
    try:
        if delay is not None:
            try:
                proc.wait(timeout=max(0.0, delay - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                sent_at = time.monotonic() - started
                if to_group:
                    os.killpg(proc.pid, signum)
                else:
                    os.kill(proc.pid, signum)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except BaseException:  # this script was stopped: the run goes too
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        watcher.done.set()
        watcher.join()
    ended = time.monotonic() - started
    deadline = time.monotonic() + grace  # children get a moment to go after their parent
    while (left := watcher.alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    stderr.seek(0)
    text = stderr.read().decode(errors="replace")
    return dict(exit=proc.returncode, hung=hung, sent_at=sent_at, seconds=ended, stderr=text, strays=left,
                followed=len(watcher.seen))


def stage_of(line: str) -> str:
    if " during " not in line:
        return "?"
    return line.split(" during ", 1)[1].split("; the output folder", 1)[0]


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moments", type=int, default=20, help="N: signals at k*T/(N+1), k = 1..N")
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="INT")
    parser.add_argument("--config", default="samples/digits/edgeport.toml")
    parser.add_argument("--quantize", default=None,
                        help="recipe of the interrupted runs (default: the config's, the same export again)")
    parser.add_argument("--to", choices=["group", "process"], default=None,
                        help="whom the signal goes to (default: the process group for INT, as Ctrl-C; the "
                             "edgeport process for TERM, as kill)")
    parser.add_argument("--only", default=None, help="run only these moments (k, comma-separated), e.g. 19,20")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take after the signal")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds child processes get to go")
    parser.add_argument("--no-warm", dest="warm", action="store_false",
                        help="T from the first run (by default a second run, with the caches of the first, is timed)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (its path is printed), leftovers moved to leftovers/k<k>")
    args = parser.parse_args()
    # the runs start with the default dispositions, as from a terminal: started in the background
    # of a non-interactive shell this script has SIGINT ignored, and an ignored signal stays
    # ignored across exec (gcc, QEMU, the Playwright driver would never see the Ctrl-C)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signum, expected, said = SIGNALS[args.signal]
    to_group = (args.to or ("group" if args.signal == "INT" else "process")) == "group"
    moments = range(1, args.moments + 1)
    if args.only:
        moments = [int(k) for k in args.only.split(",")]

    root = Path(tempfile.mkdtemp(prefix="edgeport-interrupt-"))
    parent, tmp = root / "run", root / "tmp"
    parent.mkdir()
    tmp.mkdir()
    out = parent / "out"
    failures = 0
    try:
        env = environment(tmp, uuid.uuid4().hex)
        first = run_moment(command(args.config, out, None), env, None, signum, False, 3600.0, args.grace)
        if first["exit"] not in (0, 1) or not (out / "report.json").is_file():
            print(f"the first run failed (exit {first['exit']}): {first['stderr'].strip()[:500]}")
            return 2
        cold = first["seconds"]
        if args.warm:  # the first run pays one-time costs (torch's compile cache, ...): time a second one
            first = run_moment(command(args.config, out, args.quantize), environment(tmp, uuid.uuid4().hex), None,
                               signum, False, 3600.0, args.grace)
            if first["exit"] not in (0, 1):
                print(f"the warm run failed (exit {first['exit']}): {first['stderr'].strip()[:500]}")
                return 2
        T = first["seconds"]
        shot = snapshot(out)
        files = sum(1 for e in shot.values() if e[0] == "file")
        size = sum(len(e[1]) for e in shot.values() if e[0] == "file")
        # what a complete run leaves in TMPDIR is the libraries' caches (torch's inductor folder,
        # ...): they stay, as in a user's /tmp, and only new entries count against a moment
        cached = {p.name for p in tmp.iterdir()}
        kill_all(first["strays"])
        if cached or first["strays"]:
            print(f"note: the complete first run left in TMPDIR (kept, not counted): {', '.join(sorted(cached))}"
                  + (f"; processes: {', '.join(first['strays'].values())}" if first["strays"] else ""))
        recipe = f"--quantize {args.quantize}" if args.quantize else "the same recipe"
        print(f"edgeport export --config {args.config} --quiet: T = {T:.1f} s "
              f"({'a second, warm run; the first took ' + format(cold, '.1f') + ' s' if args.warm else 'the first run'}"
              f", exit {first['exit']}), {files} files, {size / 1e3:.1f} KB in the output folder")
        if first["exit"] == 1:  # a budget or self-check failed: say which, the export itself is complete
            print("  exit 1: " + "; ".join(ln.strip() for ln in first["stderr"].splitlines() if ln.strip())[:500])
        print(f"SIG{args.signal} to the {'process group' if to_group else 'edgeport process'} at k*T/{args.moments + 1}, "
              f"{recipe}; expect exit {expected}, one line, output unchanged, nothing left, no stray process")
        if args.keep:
            print(f"folder: {root}")
        header = (f"{'k':>3}{'at s':>7}{'end s':>7}{'exit':>6}  {'stage':<28}{'lines':>6}  {'unchanged':<10}"
                  f"{'leftovers':<22}{'stray processes':<22}{'ok':<3}")
        print(header)
        print("-" * len(header))
        sys.stdout.flush()
        rows = []
        for k in moments:
            delay = k * T / (args.moments + 1)
            env = environment(tmp, uuid.uuid4().hex)
            r = run_moment(command(args.config, out, args.quantize), env, delay, signum, to_group, args.timeout,
                           args.grace)
            lines = [line for line in r["stderr"].splitlines() if line.strip()]
            after = snapshot(out) if out.exists() else {}
            changed = differences(shot, after)
            stash = root / "leftovers" / f"k{k}" if args.keep else None
            beside = clear(parent, {"out"}, stash and stash / "beside")
            temps = clear(tmp, cached, stash and stash / "TMPDIR")
            strays = r["strays"]
            kill_all(strays)
            if changed:
                restore(out, shot)
            extra = [line for line in lines if not line.startswith("edgeport: ")]
            problems = []
            if r["hung"]:
                problems.append(f"no exit within {args.timeout:.0f} s of the signal")
            late = r["sent_at"] is None or (r["exit"] in (0, 1) and not r["hung"])
            if late:
                problems.append("late: the run had written its output before the signal"
                                if r["sent_at"] is not None else "late: the run had ended before the signal")
            if r["exit"] != expected:
                problems.append(f"exit {r['exit']}")
            if not any(line.startswith(f"edgeport: {said} during ") for line in lines):
                problems.append(f"no '{said}' line")
            if len(lines) != 1:
                problems.append(f"stderr: {len(lines)} lines")
            if "Traceback" in r["stderr"]:
                problems.append("traceback")
            if changed:
                problems.append(f"output changed: {', '.join(changed[:4])}")
            if beside:
                problems.append(f"beside the output: {', '.join(beside)}")
            if temps:
                problems.append(f"in TMPDIR: {', '.join(temps)}")
            if strays:
                problems.append(f"alive: {', '.join(f'{n}[{p}]' for p, n in sorted(strays.items()))}")
            ok = not problems
            failures += not ok
            stage = stage_of(lines[-1]) if lines else "-"
            left = beside + [f"TMPDIR/{t}" for t in temps]
            names = sorted(set(strays.values()))
            at = f"{r['sent_at']:.1f}" if r["sent_at"] is not None else "-"
            print(f"{k:>3}{at:>7}{r['seconds']:>7.1f}{str(r['exit']):>6}  {short(stage, 27):<28}{len(lines):>6}  "
                  f"{'yes' if not changed else f'NO ({len(changed)})':<10}{short(', '.join(left) or 'none', 21):<22}"
                  f"{short(', '.join(names) or 'none', 21):<22}{'ok' if ok else 'FAIL'}")
            for problem in problems:
                print(f"       {problem}")
            if not ok:
                for line in r["stderr"].splitlines()[:40]:
                    print(f"       | {line}")
            sys.stdout.flush()
            rows.append(dict(k=k, ok=ok, stage=stage, late=late,
                             stop=r["seconds"] - r["sent_at"] if r["sent_at"] is not None else None, exit=r["exit"] == expected and not r["hung"],
                             one_line=len(lines) == 1 and not extra and "Traceback" not in r["stderr"],
                             unchanged=not changed, nothing_left=not (beside or temps), no_strays=not strays,
                             extra=extra))
        passed = sum(r["ok"] for r in rows)
        print("-" * len(header))
        stops = [r["stop"] for r in rows if r["stop"] is not None]
        late = sum(r["late"] for r in rows)
        print(f"{len(rows)} moments, {passed} passed every criterion, {len(rows) - passed} failed"
              + (f" ({late} late: the signal came after the output was written)" if late else ""))
        for key, label in [("exit", f"exit {expected}"), ("one_line", "one stderr line, no traceback"),
                           ("unchanged", "output folder unchanged"), ("nothing_left", "nothing left beside it / in TMPDIR"),
                           ("no_strays", "no stray process")]:
            print(f"  {label:<36}{sum(r[key] for r in rows):>3}/{len(rows)}")
        if stops:
            print(f"  {'seconds from the signal to the exit':<36}median {sorted(stops)[len(stops) // 2]:.1f}, "
                  f"max {max(stops):.1f}")
        stages: dict[str, int] = {}
        for r in rows:
            stages[r["stage"]] = stages.get(r["stage"], 0) + 1
        print(f"  stages: {'; '.join(f'{s} x{n}' for s, n in stages.items())}")
        noise = sorted({line for r in rows for line in r["extra"]})
        for line in noise[:5]:
            print(f"  other stderr line: {short(line, 150)}")
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
