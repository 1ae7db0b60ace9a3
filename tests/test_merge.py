"""The three-way merge of one file, for every combination of present, changed and binary."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from builder_core.errors import WriteError
from builder_core.merge import Labels, merge_file, merge_text
from builder_core.output import Change, FileContent, apply_changes

LABELS = Labels("yours", "template 9.9.9")
BASE = FileContent(b"one\ntwo\nthree\n", 0o644)
BINARY = FileContent(b"\x00\x01model", 0o644)


def text(data: str, mode: int = 0o644) -> FileContent:
    return FileContent(data.encode(), mode)


def test_a_file_the_user_left_alone_takes_the_template_change() -> None:
    new = text("one\n2\nthree\n")
    assert merge_file(BASE, BASE, new, LABELS).content == new


def test_edits_on_both_sides_merge_when_they_touch_different_lines() -> None:
    outcome = merge_file(BASE, text("ONE\ntwo\nthree\n"), text("one\ntwo\nTHREE\n"), LABELS)
    assert outcome.status == "merged"
    assert outcome.content == text("ONE\ntwo\nTHREE\n")


def test_a_conflict_keeps_markers_on_their_own_lines_without_a_final_newline() -> None:
    merged, conflicts = merge_text("a\nb", "a\nmine", "a\ntheirs", LABELS)
    assert conflicts == 1
    assert merged == "a\n<<<<<<< yours\nmine\n=======\ntheirs\n>>>>>>> template 9.9.9\n"


def test_binary_files_are_never_merged() -> None:
    new = FileContent(b"\x00\x02model", 0o644)
    assert merge_file(BINARY, BINARY, new, LABELS).content == new
    mine = FileContent(b"\x00\x03retrained", 0o644)
    outcome = merge_file(BINARY, mine, new, LABELS)
    assert (outcome.status, outcome.content) == ("kept-yours", mine)


def test_a_file_the_template_dropped_is_removed_only_when_unedited() -> None:
    assert merge_file(BASE, BASE, None, LABELS).content is None
    edited = text("one\ntwo\nthree\nmine\n")
    assert merge_file(BASE, edited, None, LABELS).content == edited


def test_a_deleted_file_stays_deleted_and_an_unchanged_one_stays_edited() -> None:
    assert merge_file(BASE, None, text("new\n"), LABELS).status == "kept-deleted"
    edited = text("mine\n")
    assert merge_file(BASE, edited, BASE, LABELS).content == edited


def test_the_users_mode_wins_over_a_template_mode_change_only_if_changed() -> None:
    new = FileContent(b"one\ntwo\nthree!\n", 0o755)
    assert merge_file(BASE, BASE, new, LABELS).content == new
    mine = FileContent(BASE.data, 0o600)
    merged = merge_file(BASE, mine, new, LABELS).content
    assert merged == FileContent(new.data, 0o600)


@pytest.mark.parametrize("existing", [True, False])
def test_a_failed_apply_restores_every_file(tmp_path: Path, existing: bool) -> None:
    (tmp_path / "a.txt").write_text("old a\n")
    (tmp_path / "gone.txt").write_text("old gone\n")
    (tmp_path / "blocker").write_text("a file where a folder must go\n")
    if existing:
        (tmp_path / "b.txt").write_text("old b\n")
    changes = [
        Change(PurePosixPath("a.txt"), text("new a\n")),
        Change(PurePosixPath("b.txt"), text("new b\n")),
        Change(PurePosixPath("gone.txt"), None),
        Change(PurePosixPath("new/dir/c.txt"), text("c\n")),
        Change(PurePosixPath("blocker/d.txt"), text("d\n")),
    ]
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(WriteError, match=r"nothing was changed: cannot write blocker/d\.txt"):
        apply_changes(tmp_path, changes)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(before)


def test_apply_writes_deletes_and_prunes_emptied_folders(tmp_path: Path) -> None:
    (tmp_path / "old" / "deep").mkdir(parents=True)
    (tmp_path / "old" / "deep" / "x.txt").write_text("x\n")
    apply_changes(
        tmp_path,
        [
            Change(PurePosixPath("old/deep/x.txt"), None),
            Change(PurePosixPath("run.sh"), text("#!/bin/sh\n", 0o755)),
        ],
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.sh"]
    assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o755
