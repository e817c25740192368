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

The output folder is replaced with the signals held (`deferred_signals`): a signal that came
before the last rename puts the previous entries back, and the run exits 130 / 143 with the
folder as it was; once the last rename is done (`finished()`) the export has happened, and a
signal until the command returns is recorded and dropped (exit 0 / 1, as the report says).

`stage(name)` names what is running, for the internal-error and signal lines.
"""

from __future__ import annotations

import atexit
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
_received_during: str | None = None  # the stage running when the signal came
_stage = "starting"
_deferring = False  # inside `deferred_signals()`: a signal is recorded, not raised
_guarding = False  # inside `guarded()`
_finished = False  # the output is written (`finished()`): a signal is too late to stop the run


def _handler(signum, frame) -> None:
    global _received, _received_during
    first = _received is None
    _received = signum
    if first:  # a second signal while unwinding must not interrupt the clean-up
        _received_during = _stage
        if not (_deferring or _finished):
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
    if _received is not None and not _finished:
        raise Cancelled(_received)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Name what runs inside (for the internal-error line); a checkpoint on the way in and out.
    An exception leaving the stage carries the innermost stage's name (`failed_stage`): the
    guard reports it after every `stage` has been left."""
    global _stage
    previous, _stage = _stage, name
    try:
        checkpoint()
        yield
        checkpoint()
    except BaseException as exc:
        if getattr(exc, "edgeport_stage", None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                exc.edgeport_stage = name
        raise
    finally:
        _stage = previous


def current_stage() -> str:
    return _stage


def failed_stage(exc: BaseException) -> str:
    """The stage `exc` came from (the innermost one it left), else the one running now."""
    return getattr(exc, "edgeport_stage", None) or _stage


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT / SIGTERM while a few renames that must not be split run: a signal that comes
    inside is recorded, not raised (`signalled()` says so; the next `checkpoint()` raises it).
    A flag, not the signal mask: with other threads alive (onnxruntime, XNNPACK, JAX pools) the
    kernel hands a blocked signal to one of them and Python still runs the handler in the main
    thread, between two renames."""
    global _deferring
    install()
    previous, _deferring = _deferring, True
    try:
        yield
    finally:
        _deferring = previous


def signalled() -> bool:
    """Whether a signal came (and was held or swallowed) during this command."""
    return _received is not None


def finished() -> None:
    """The output is written: from here until the command returns, a signal is too late to stop
    the run and must not make its exit code say otherwise (130 / 143 mean "the output folder is
    as it was"); it is recorded and dropped. Outside `guarded()` (edgeport used as a library)
    signals keep raising."""
    global _finished
    if _guarding:
        _finished = True


def _crash_log(exc: BaseException) -> str:
    """Write the traceback to a log file; return its path ('' when no file could be written)."""
    text = "".join(traceback.format_exception(exc))
    header = (f"edgeport internal error\nstage: {failed_stage(exc)}\ncommand: {' '.join(sys.argv)}\n"
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
    global _received, _received_during, _guarding, _finished
    _received, _received_during, _guarding, _finished = None, None, True, False
    install()
    try:
        try:
            return run()
        finally:
            sys.stdout.flush()
    except Cancelled as exc:
        return _report_cancelled(exc.signum, exc)
    except KeyboardInterrupt as exc:  # SIGINT while our handler was replaced by Python's default
        return _report_cancelled(signal.SIGINT, exc)
    except EdgeportError as exc:
        if _received is not None:  # a signal surfaced as some library's error: it is still the signal
            return _report_cancelled(_received, exc)
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
            return _report_cancelled(_received, exc)
        if isinstance(exc, MemoryError):
            print(f"edgeport: error: out of memory during {failed_stage(exc)}; try a smaller model, batch or "
                  "--calib-samples", file=sys.stderr)
            return EXIT_USAGE
        log = _crash_log(exc)
        where = f"; details in {log}" if log else ""
        print(f"edgeport: internal error during {failed_stage(exc)}: {type(exc).__name__}: {_one_line(exc)} "
              f"(a bug in edgeport: please report it at {ISSUES_URL}{where})", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        _guarding = _finished = False
        for signum in EXIT_SIGNAL:  # back to the defaults for whoever called main() in-process
            with contextlib.suppress(ValueError):
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        atexit.unregister(_ignore_signals_at_exit)  # registered last, so it runs first at exit
        atexit.register(_ignore_signals_at_exit)


def _ignore_signals_at_exit() -> None:
    """The command has returned and the process ends: the libraries' exit handlers (closing
    Chromium, removing the firmware build folders) run next. A signal there would print a
    KeyboardInterrupt traceback or kill the process half-way (and with a signal as its status,
    after an export that succeeded); the exit code is decided, so signals are ignored from here."""
    for signum in EXIT_SIGNAL:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_IGN)


def _report_cancelled(signum: int, exc: BaseException | None = None) -> int:
    where = _received_during or (failed_stage(exc) if exc is not None else _stage)
    print(f"edgeport: {SIGNAL_NAMES.get(signum, f'signal {signum}')} during {where}; "
          "the output folder was left as it was", file=sys.stderr)
    return EXIT_SIGNAL.get(signum, 128 + int(signum))
