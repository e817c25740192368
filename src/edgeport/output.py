"""The output folder: never lose a user's file, never leave half an export behind.

`--out` must be a new path, an empty folder, or a folder edgeport made before (its
`report.json` says so and lists the files edgeport wrote, `files`); anything else is refused
unless `--force`, and even then edgeport only adds its own entries beside the user's. The
filesystem root, the home folder and the source model's own folder are always refused.

Everything is written into a work folder beside `--out` first (`.<out>.edgeport-*`), and moved
into place only when the whole run succeeded: each top-level entry (a target's folder, the
report) replaces the previous one of the same name with two renames done while SIGINT/SIGTERM
are held back, so each folder is either the old one or the new one; a signal held during the
renames puts the previous entries back, so an interrupted run leaves the folder as it was. An entry edgeport did not
write is never replaced: a user's file inside a previous target folder (`onnx/NOTES.md`) or a
same-named file of theirs stops the run before any work, naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeport.errors import InputError
from edgeport.guard import checkpoint, deferred_signals, finished, signalled

REPORT_NAME = "report.json"
SHOWN = 3  # foreign entries named in a refusal


@dataclass
class OutputFolder:
    """Where one export goes, and what edgeport wrote there before (relative POSIX paths)."""

    path: Path
    previous: set[str] = field(default_factory=set)
    created: list[Path] = field(default_factory=list)  # folders made for this run, outermost first
    committed: bool = False  # the output folder now holds this run's results

    def work_folder(self) -> Path:
        """A fresh folder beside the output folder (same filesystem, so the final renames are atomic).
        Folders made on the way to it are noted, so a failed run removes them (`discard`)."""
        parent = self.path.parent
        missing = [p for p in (parent, *parent.parents) if not p.exists()]
        self.created = list(reversed(missing))  # outermost first
        try:
            parent.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=f".{self.path.name}.edgeport-", dir=parent))
        except OSError:
            self.discard(None)
            raise self._refusal(sys.exc_info()[1]) from None

    def _refusal(self, exc: OSError) -> InputError:
        parent = self.path.parent
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            return InputError(f"--out {self.path}: cannot create it: a part of the path is a file")
        if isinstance(exc, PermissionError):
            return InputError(f"--out {self.path}: cannot write into {parent} (permission denied)")
        return InputError(f"--out {self.path}: cannot write into {parent} ({exc.strerror or exc})")

    def discard(self, work: Path | None) -> None:
        """After a run: remove the work folder and, unless the output was committed, the (empty)
        folders made for it."""
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        if not self.committed:
            for folder in reversed(self.created):  # innermost first
                try:
                    folder.rmdir()
                except OSError:
                    break

    def check_entries(self, names: list[str]) -> None:
        """Refuse, before any work, to replace a top-level entry edgeport did not write or a
        folder of its own that now holds a user's file."""
        for name in names:
            dest = self.path / name
            if not (dest.exists() or dest.is_symlink()):
                continue
            is_folder = dest.is_dir() and not dest.is_symlink()
            if (name not in self.previous) if not is_folder else (name not in self._top_level()):
                raise InputError(f"--out {self.path}: '{name}' is not from an earlier edgeport export; "
                                 "move it away or choose another --out")
            if not is_folder:
                continue
            foreign = sorted(p.relative_to(self.path).as_posix() for p in dest.rglob("*")
                             if not p.is_dir() and p.relative_to(self.path).as_posix() not in self.previous)
            if foreign:
                raise InputError(f"--out {self.path}: {foreign[0]} was not written by edgeport and would be "
                                 f"replaced with '{name}'; move it away or choose another --out")

    def _top_level(self) -> set[str]:
        return {p.split("/", 1)[0] for p in self.previous} | {REPORT_NAME}

    def files_after(self, work: Path) -> list[str]:
        """The files edgeport will have written into the output folder once `work` is moved in:
        the new ones, and the earlier ones in entries this export does not replace."""
        new = written_files(work)
        replaced = {name.split("/", 1)[0] for name in new} | {REPORT_NAME}
        kept = {p for p in self.previous if p.split("/", 1)[0] not in replaced and (self.path / p).exists()}
        return sorted(set(new) | kept | {REPORT_NAME})

    def commit(self, work: Path) -> None:
        """Move each finished top-level entry of `work` into the output folder. A signal that
        comes before the last rename is done puts every replaced entry back (the run then stops
        with the folder as it was); after it, the export has happened (`finished`)."""
        checkpoint()
        done: list[tuple[Path, Path, Path | None]] = []  # (entry in work, its destination, the stale one)
        with deferred_signals():
            created = not self.path.exists()
            self.path.mkdir(exist_ok=True)
            try:
                for entry in sorted(work.iterdir()):
                    if entry.name.startswith("."):
                        continue  # working files (float baselines), removed with the work folder
                    dest = self.path / entry.name
                    stale = work / f".stale-{entry.name}"
                    if dest.is_dir() and not dest.is_symlink():
                        os.replace(dest, stale)
                    elif dest.exists() or dest.is_symlink():
                        _keep(dest, stale)  # a file is replaced in one rename below; this is for a roll-back
                    else:
                        stale = None
                    done.append((entry, dest, stale))
                    os.replace(entry, dest)
                    if signalled():
                        break
            except BaseException:
                self._roll_back(done, created)
                raise
            if signalled():
                self._roll_back(done, created)
            else:
                self.committed = True
                finished()
        checkpoint()  # raises the signal that was held, after the roll-back

    def _roll_back(self, done: list[tuple[Path, Path, Path | None]], created: bool) -> None:
        """Undo the renames of `commit`, last first: each new entry back into the work folder,
        the previous one (folder moved aside, or a file's copy) back in its place."""
        for entry, dest, stale in reversed(done):
            if not entry.exists() and (dest.exists() or dest.is_symlink()):
                os.replace(dest, entry)
            if stale is not None:
                os.replace(stale, dest)
        if created:
            with contextlib.suppress(OSError):
                self.path.rmdir()


def _keep(path: Path, copy: Path) -> None:
    """A copy of the file `path` (a hard link when the filesystem has them)."""
    try:
        os.link(path, copy, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, copy, follow_symlinks=False)


def written_files(folder: Path) -> list[str]:
    """Files under `folder` (relative POSIX paths), hidden working entries left out."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if not p.is_dir() and not p.relative_to(folder).parts[0].startswith("."))


def _refuse_dangerous(out, path: Path) -> Path:
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise InputError(f"--out {out}: refusing to write into the filesystem root")
    if resolved == Path.home().resolve():
        raise InputError(f"--out {out}: refusing to write into the home folder; name a subfolder")
    return resolved


def sweep_folder(out: str | os.PathLike, force: bool = False) -> None:
    """Validate a sweep's `--out`: new, empty, or an earlier sweep's folder (its `sweep.json`),
    else refused unless `force`; root and home always refused."""
    path = Path(out).expanduser()
    _refuse_dangerous(out, path)
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    entries = sorted(p.name for p in path.iterdir())
    try:
        earlier = "edgeport_sweep" in json.loads((path / "sweep.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError, TypeError):
        earlier = False
    if entries and not earlier and not force:
        shown = ", ".join(entries[:SHOWN]) + (", ..." if len(entries) > SHOWN else "")
        raise InputError(f"--out {out}: the folder holds files edgeport did not write ({shown}); give a new or "
                         "empty folder, the folder of an earlier sweep, or --force")


def output_folder(out: str | os.PathLike, source: str | None = None, force: bool = False) -> OutputFolder:
    """Validate `--out` (see the module docstring) before any work is done."""
    path = Path(out).expanduser()
    resolved = _refuse_dangerous(out, path)
    if source and ":" not in source and Path(source).exists():
        model = Path(source).resolve()
        if resolved == model.parent or resolved in model.parents:
            raise InputError(f"--out {out}: refusing to write into the folder that holds the source model {source}")
    if not (path.exists() or path.is_symlink()):
        return OutputFolder(path)
    if not path.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: folder is not writable (permission denied)")
    try:
        entries = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        raise InputError(f"--out {out}: cannot read the folder ({exc.strerror or exc})") from None
    if not entries:
        return OutputFolder(path)
    previous = _previous_files(path)
    if previous is None and not force:
        shown = ", ".join(entries[:SHOWN]) + (", ..." if len(entries) > SHOWN else "")
        raise InputError(f"--out {out}: the folder holds files edgeport did not write ({shown}); give a new or "
                         "empty folder, the folder of an earlier export, or --force to add edgeport's files to it")
    return OutputFolder(path, previous or set())


def _previous_files(path: Path) -> set[str] | None:
    """The files an earlier export wrote into `path`, from its report; None if it has no edgeport report."""
    try:
        report = json.loads((path / REPORT_NAME).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(report, dict) or "edgeport_report" not in report:
        return None
    if isinstance(report.get("files"), list):
        return {str(f) for f in report["files"]} | {REPORT_NAME}
    # a report from before `files` existed: its targets' folders and its own files are edgeport's
    previous = {REPORT_NAME}
    names = [t.get("target") for t in report.get("targets", []) if isinstance(t, dict)]
    for name in [n for n in names if isinstance(n, str) and n and "/" not in n]:
        if (path / name).is_dir():
            previous |= {p.relative_to(path).as_posix() for p in (path / name).rglob("*") if not p.is_dir()}
    if report.get("quant_params"):
        previous.add(str(report["quant_params"]))
    return previous


def check_report_file(destination: Path, force: bool = False) -> None:
    """Refuse a `check` report path before any work: its folder must exist and be writable, and
    an existing file there must be an edgeport report (unless `force`)."""
    folder = destination.parent
    if not folder.is_dir():
        raise InputError(f"--report {destination}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--report {destination}: cannot write into {folder} (permission denied)")
    if destination.is_dir():
        raise InputError(f"--report {destination}: is a folder; give a file name such as model.report.json")
    if destination.exists() and not force:
        try:
            ours = "edgeport_report" in json.loads(destination.read_text())
        except (OSError, ValueError, UnicodeDecodeError, TypeError):
            ours = False
        if not ours:
            raise InputError(f"--report {destination}: exists and is not an edgeport report; choose another "
                             "name or pass --force")


def write_report_file(destination: Path, text: str) -> None:
    """Replace `destination` with `text` atomically (a temporary file beside it, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        checkpoint()
        os.replace(tmp, destination)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
