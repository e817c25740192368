"""Errors that carry an exit code.

Bad input (a file that will not load, an unknown target, data of the wrong shape, ...) is an
`InputError`: the CLI prints its one-line message and exits with code 2. Anything else that
escapes is a bug in edgeport: `edgeport.guard` reports it in one line with exit code 3 and
writes the traceback to a log file.
"""

EXIT_OK = 0
EXIT_BUDGET = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class EdgeportError(Exception):
    """Base class of the errors edgeport raises on purpose."""

    exit_code = EXIT_USAGE


class InputError(EdgeportError):
    """The user's input cannot be used: wrong file, shape, name, option or data."""


class UnsupportedOpError(InputError):
    """The model contains an operator a format or runtime cannot handle."""

    def __init__(self, op: str, node: str, where: str):
        self.op, self.node, self.where = op, node, where
        super().__init__(f"unsupported op '{op}' at node '{node}': {where}")


class MissingDependencyError(EdgeportError):
    """An optional backend is needed for this request but is not installed."""

    def __init__(self, package: str, purpose: str, extra: str | None = None):
        hint = f"pip install 'edgeport[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs the Python package '{package}' ({hint})")


class RuntimeGap(Exception):
    """A runtime cannot execute this artifact here (e.g. an op its evaluator lacks, or a check that
    needs another OS). Checks report it as not run, with this message; it is not a pass."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error's message (or its type's name), at most `limit` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."
