"""Verifying rendered files and writing them into place, all or nothing."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
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


def write_tree(contents: Mapping[PurePosixPath, FileContent], target: Path, *, force: bool) -> None:
    """Write into a temporary sibling folder, then rename it to ``target``.

    A failure removes the temporary folder and any parent folders this call created; an existing
    ``target`` (with ``force``) is only removed once the new one is in place.
    """
    _check_target(target, force=force)
    created: list[Path] = []
    temp: Path | None = None
    try:
        _make_parents(target.parent, created)
        temp = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        )
        _write_files(temp, contents)
        _swap_into_place(temp, target)
    except OSError as err:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        raise WriteError(f"{target}: cannot write the service: {err.strerror or err}") from err


def _check_target(target: Path, *, force: bool) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if not force:
        raise OutputExistsError(f"{target}: already exists; pass --force to replace it")
    if target.is_symlink() or not target.is_dir():
        raise OutputExistsError(f"{target}: exists and is not a folder; not replaced")


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


def _swap_into_place(temp: Path, target: Path) -> None:
    if not target.exists():
        temp.rename(target)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    backup.rmdir()
    target.rename(backup)
    try:
        temp.rename(target)
    except OSError:
        backup.rename(target)
        raise
    shutil.rmtree(backup)


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
