"""The top-level guard: every command ends with one of four exit codes and at most one line.

0 ok; 1 a budget breached; 2 bad input or usage (`EdgeportError`); 3 an internal error (a bug:
one line naming the stage and the log file, the traceback goes to that file, never to the
terminal); 130 / 143 when SIGINT / SIGTERM stopped the run.

Signals: `guarded()` installs handlers for SIGINT and SIGTERM that record the signal and raise
`Cancelled` (a BaseException, so a library's `except Exception` cannot swallow it). Converters
may install their own handlers or catch everything; `checkpoint()` between stages re-installs
ours and raises if a signal was recorded, and the pipeline asks it once more right before the
output folder is replaced, so a signal never lets a run finish. Child processes (gcc, QEMU,
Chromium) are stopped by the code that started them as `Cancelled` unwinds through it
(`subprocess.run` kills its child on any exception; sessions close in `finally`).

`stage(name)` names what is running, for the internal-error line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from typing import Callable, Iterator

from edgeport.errors import EXIT_INTERNAL, EXIT_USAGE, EdgeportError

ISSUES_URL = "https://github.com/edgeport/edgeport/issues"
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNAL_NAMES = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}


class Cancelled(BaseException):
    """A signal asked the run to stop; raised at the next point where Python code runs."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(SIGNAL_NAMES.get(signum, f"signal {signum}"))

    @property
    def exit_code(self) -> int:
        return EXIT_SIGNAL.get(self.signum, 128 + int(self.signum))


_received: int | None = None
_stage = "starting"


def _handler(signum, frame) -> None:
    global _received
    first = _received is None
    _received = signum
    if first:  # a second signal while unwinding must not interrupt the clean-up
        raise Cancelled(signum)


def install() -> None:
    """Our handlers for SIGINT and SIGTERM (main thread only; elsewhere signals stay as they are)."""
    for signum in EXIT_SIGNAL:
        with contextlib.suppress(ValueError):  # not the main thread
            if signal.getsignal(signum) is not _handler:
                signal.signal(signum, _handler)


def checkpoint() -> None:
    """A safe point: re-install the handlers (a converter may have replaced them) and stop here
    if a signal came while they were not ours or was swallowed."""
    install()
    if _received is not None:
        raise Cancelled(_received)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Name what runs inside (for the internal-error line); a checkpoint on the way in and out."""
    global _stage
    previous, _stage = _stage, name
    checkpoint()
    try:
        yield
    finally:
        _stage = previous
    checkpoint()


def current_stage() -> str:
    return _stage


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT / SIGTERM while a few renames that must not be split run (they are delivered,
    and raise, right after)."""
    signals = set(EXIT_SIGNAL)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _crash_log(exc: BaseException) -> str:
    """Write the traceback to a log file; return its path ('' when no file could be written)."""
    text = "".join(traceback.format_exception(exc))
    header = (f"edgeport internal error\nstage: {_stage}\ncommand: {' '.join(sys.argv)}\n"
              f"time: {time.strftime('%Y-%m-%dT%H:%M:%S')}\npython: {sys.version.split()[0]}\n\n")
    for folder in (os.environ.get("EDGEPORT_LOG_DIR"), tempfile.gettempdir()):
        if not folder:
            continue
        try:
            fd, path = tempfile.mkstemp(prefix="edgeport-crash-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w") as f:
                f.write(header + text)
            return path
        except OSError:
            continue
    return ""


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= 300 else line[:297] + "..."


def guarded(run: Callable[[], int]) -> int:
    """Run a command; turn whatever ends it into an exit code and at most one line on stderr."""
    global _received
    _received = None
    install()
    try:
        try:
            return run()
        finally:
            sys.stdout.flush()
    except Cancelled as exc:
        return _report_cancelled(exc.signum)
    except KeyboardInterrupt:  # SIGINT while our handler was replaced by Python's default
        return _report_cancelled(signal.SIGINT)
    except EdgeportError as exc:
        if _received is not None:  # a signal surfaced as some library's error: it is still the signal
            return _report_cancelled(_received)
        print(f"edgeport: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # argparse --help / --version, or a library calling sys.exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except BrokenPipeError:  # `edgeport ... | head`: the reader left; nothing to say to it
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERNAL if _received is None else EXIT_SIGNAL.get(_received, 130)
    except BaseException as exc:  # noqa: BLE001 - the guard: a bug, reported in one line
        if _received is not None:
            return _report_cancelled(_received)
        if isinstance(exc, MemoryError):
            print(f"edgeport: error: out of memory during {_stage}; try a smaller model, batch or "
                  "--calib-samples", file=sys.stderr)
            return EXIT_USAGE
        log = _crash_log(exc)
        where = f"; details in {log}" if log else ""
        print(f"edgeport: internal error during {_stage}: {type(exc).__name__}: {_one_line(exc)} "
              f"(a bug in edgeport: please report it at {ISSUES_URL}{where})", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        for signum in EXIT_SIGNAL:  # back to the defaults for whoever called main() in-process
            with contextlib.suppress(ValueError):
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


def _report_cancelled(signum: int) -> int:
    print(f"edgeport: {SIGNAL_NAMES.get(signum, f'signal {signum}')} during {_stage}; "
          "the output folder was left as it was", file=sys.stderr)
    return EXIT_SIGNAL.get(signum, 128 + int(signum))
