"""Verifying rendered files and writing them into place, all or nothing."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from builder_core.errors import GeneratedFileError, OutputExistsError, PackagingError, WriteError


@dataclass(frozen=True)
class FileContent:
    """The bytes of one output file and its permission bits."""

    data: bytes
    mode: int


def read_bytes(path: Path) -> bytes:
    """Read a source file; a missing template file means a broken installation."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise PackagingError(f"{path}: cannot read: {err.strerror or err}") from err


def verify(contents: Mapping[PurePosixPath, FileContent], sources: Mapping[str, str]) -> None:
    """Every ``.py`` compiles and every YAML or JSON file parses, before anything is written."""
    for path, content in contents.items():
        problem = _parse_problem(path, content.data)
        if problem:
            origin = sources.get(str(path), "?")
            raise GeneratedFileError(f"{path} (from {origin}): {problem}")


def _parse_problem(path: PurePosixPath, data: bytes) -> str | None:
    suffix = path.suffix
    if suffix not in (".py", ".yaml", ".yml", ".json"):
        return None
    try:
        text = data.decode("utf-8")
        if suffix == ".py":
            compile(text, str(path), "exec", dont_inherit=True)
        elif suffix == ".json":
            json.loads(text)
        else:
            list(yaml.safe_load_all(text))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except SyntaxError as err:
        return f"line {err.lineno}: Python syntax error: {err.msg}"
    except json.JSONDecodeError as err:
        return f"line {err.lineno}: invalid JSON: {err.msg}"
    except yaml.YAMLError as err:
        return f"invalid YAML: {err}".replace("\n", " ")
    return None


def write_tree(
    contents: Mapping[PurePosixPath, FileContent],
    target: Path,
    *,
    force: bool,
    marker: str,
) -> Path | None:
    """Write into a temporary sibling folder, then rename it to ``target``.

    ``force`` replaces an existing ``target`` only if it holds ``marker`` (the file builder
    writes into everything it makes); the old folder is moved aside, never deleted, and its new
    place is returned. A failure removes the temporary folder and any parent folders this call
    created; the temporary folders of runs killed earlier are removed first.
    """
    _check_target(target, force=force, marker=marker)
    created: list[Path] = []
    try:
        _make_parents(target.parent, created)
        remove_dead_work_folders(target.parent, f".{target.name}.", WORK_SUFFIX)
        with WorkFolder(target.parent, f".{target.name}.") as temp:
            _write_files(temp.path, contents)
            temp.release()
            return _swap_into_place(temp.path, target)
    except OSError as err:
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        raise WriteError(f"{target}: cannot write the service: {err.strerror or err}") from err


def _check_target(target: Path, *, force: bool, marker: str) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_dir():
        raise OutputExistsError(f"{target}: exists and is not a folder; not replaced")
    if not force:
        raise OutputExistsError(
            f"{target}: already exists; pass --force to move it aside and generate anew, "
            "or run `builder upgrade` on it to keep your edits in place"
        )
    if not (target / marker).is_file():
        raise OutputExistsError(
            f"{target}: exists and was not made by builder (it has no {marker}); --force only "
            "replaces builder's own folders: move it away or choose another --name or --output-dir"
        )


def _make_parents(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` and its missing parents, recording each in ``created`` as it is made."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _write_files(root: Path, contents: Mapping[PurePosixPath, FileContent]) -> None:
    # mkdtemp makes the folder private (0700); the service folder should look like any other.
    root.chmod(0o755)
    for relative, content in contents.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.data)
        path.chmod(content.mode)


def _swap_into_place(temp: Path, target: Path) -> Path | None:
    """Rename ``temp`` to ``target``; an existing ``target`` is moved aside, its place returned."""
    if not target.exists():
        temp.rename(target)
        return None
    backup = _free_backup_name(target)
    target.rename(backup)
    try:
        temp.rename(target)
    except OSError:
        backup.rename(target)
        raise
    return backup


def _free_backup_name(target: Path) -> Path:
    """``NAME.before-YYYYMMDD-HHMMSS`` beside ``target`` (with ``-2``, ``-3``... if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = target.with_name(f"{target.name}.before-{stamp}")
    number = 1
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = target.with_name(f"{target.name}.before-{stamp}-{number}")
    return candidate


WORK_SUFFIX = ".partial"
LOCK_FILE = ".builder-lock"
# A work folder whose lock file is missing is only taken for dead once it is this old: a live
# run creates the lock file a moment after the folder, and removes it just before renaming.
UNLOCKED_GRACE_SECONDS = 60.0


class WorkFolder:
    """A temporary folder that is visibly alive while its run is.

    The folder holds a lock file, locked (``flock``) for as long as this process is writing: the
    kernel drops the lock when the process dies, even by SIGKILL, so a later run can tell the
    leftovers of a dead run from the folder of a live one. The folder is removed on failure.
    """

    def __init__(self, parent: Path, prefix: str, suffix: str = WORK_SUFFIX) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
        self._lock: int | None = None
        try:
            self._lock = os.open(self.path / LOCK_FILE, os.O_CREAT | os.O_WRONLY, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._cleanup()
            raise

    def __enter__(self) -> WorkFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self._cleanup()
        self._close()

    def release(self) -> None:
        """Remove the lock file (the lock itself is held until exit) before the folder is used."""
        (self.path / LOCK_FILE).unlink()

    def _close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _cleanup(self) -> None:
        self._close()
        shutil.rmtree(self.path, ignore_errors=True)


def remove_dead_work_folders(parent: Path, prefix: str, suffix: str = WORK_SUFFIX) -> list[Path]:
    """Remove the work folders under ``parent`` left by runs that died; never a live run's."""
    removed = []
    for folder in sorted(parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}")):
        if folder.is_symlink() or not folder.is_dir():
            continue
        if _is_dead(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _is_dead(folder: Path) -> bool:
    lock_path = folder / LOCK_FILE
    try:
        descriptor = os.open(lock_path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            age = time.time() - folder.stat().st_mtime
        except OSError:
            return False
        return age > UNLOCKED_GRACE_SECONDS
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live run holds it
    finally:
        os.close(descriptor)
    return True


@dataclass(frozen=True)
class Change:
    """One file under a project's folder to write (``content``) or to delete (``None``)."""

    path: PurePosixPath
    content: FileContent | None


def apply_changes(root: Path, changes: Sequence[Change]) -> None:
    """Apply every change to the files under ``root``, or none of them.

    New contents are staged in a hidden folder inside ``root`` first (so each one lands with a
    rename on the same file system) and every file replaced or deleted is moved aside into it;
    a failure puts every moved file back and removes the files and folders that were added.
    """
    try:
        staging = Path(tempfile.mkdtemp(prefix=".builder-upgrade.", dir=root))
    except OSError as err:
        raise WriteError(f"{root}: cannot write the upgrade: {err.strerror or err}") from err
    done: list[tuple[Path, Path | None]] = []
    created: list[Path] = []
    where = "the new files (in a temporary folder)"
    try:
        _stage(staging, changes)
        for index, change in enumerate(changes):
            where = str(change.path)
            _apply_one(root / change.path, staging, index, change.content, done, created)
    except BaseException as err:
        _roll_back(done, created)
        if not isinstance(err, OSError):
            raise
        raise WriteError(
            f"{root}: nothing was changed: cannot write {where}: {err.strerror or err}"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_emptied_folders(root, [change.path for change in changes if change.content is None])


def _stage(staging: Path, changes: Sequence[Change]) -> None:
    (staging / "new").mkdir()
    (staging / "old").mkdir()
    for index, change in enumerate(changes):
        if change.content is not None:
            path = staging / "new" / str(index)
            path.write_bytes(change.content.data)
            path.chmod(change.content.mode)


def _apply_one(
    target: Path,
    staging: Path,
    index: int,
    content: FileContent | None,
    done: list[tuple[Path, Path | None]],
    created: list[Path],
) -> None:
    """Move the old file (if any) aside, then rename the staged one into place."""
    backup = None
    if target.exists() or target.is_symlink():
        backup = staging / "old" / str(index)
        target.rename(backup)
    done.append((target, backup))
    if content is not None:
        _make_parents(target.parent, created)
        (staging / "new" / str(index)).rename(target)


def _roll_back(done: list[tuple[Path, Path | None]], created: list[Path]) -> None:
    """Undo ``done`` in reverse; best effort, so one failure does not stop the rest."""
    for target, backup in reversed(done):
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.rename(target)
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _remove_emptied_folders(root: Path, deleted: list[PurePosixPath]) -> None:
    """Remove the folders that deleting files left empty (never ``root`` itself)."""
    for path in deleted:
        folder = (root / path).parent
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
