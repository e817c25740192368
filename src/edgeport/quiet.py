"""Silencing third-party chatter during conversion and loading.

Converters (torch.onnx, coremltools, litert-torch) print progress, version warnings and log
lines, some from C++ straight to the file descriptors. edgeport reports results and errors
itself, so those are muted while they run; exceptions still propagate unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings


@contextlib.contextmanager
def quiet_python():
    """Mute Python-level output: logging below ERROR, print() to stdout/stderr, warnings."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def quiet_native():
    """Mute native libraries writing to file descriptors 1 and 2 (absl / TFLite log lines)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@contextlib.contextmanager
def quiet():
    """Both of the above."""
    with quiet_native(), quiet_python():
        yield
