"""--force never deletes what builder did not make, and killed runs leave nothing for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_builder

from builder_core import build
from builder_core.output import LOCK_FILE, WorkFolder, remove_dead_work_folders


def test_force_refuses_a_folder_builder_did_not_make(tmp_path: Path) -> None:
    target = tmp_path / "iris-classifier"
    target.mkdir()
    (target / "thesis.txt").write_text("three years of work")
    result = run_builder("--force", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "not made by builder" in result.stderr
    assert ".builder-answers.yml" in result.stderr
    assert (target / "thesis.txt").read_text() == "three years of work"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["iris-classifier"]


def test_force_over_an_edited_project_moves_it_aside_whole(tmp_path: Path) -> None:
    target = build(output_dir=tmp_path).target
    (target / "NOTES.md").write_text("our notes")
    (target / ".git").mkdir()
    (target / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    readme = (target / "README.md").read_text()
    (target / "README.md").write_text(readme + "\nOur own section.\n")

    result = run_builder("--force", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    backups = [path for path in tmp_path.iterdir() if path.name != target.name]
    assert len(backups) == 1
    backup = backups[0]
    assert backup.name.startswith("iris-classifier.before-")
    assert str(backup) in result.stdout or backup.name in result.stdout
    assert (backup / "NOTES.md").read_text() == "our notes"
    assert (backup / ".git" / "HEAD").is_file()
    assert (backup / "README.md").read_text().endswith("Our own section.\n")
    assert (target / "README.md").read_text() == readme
    assert not (target / "NOTES.md").exists()


def test_force_twice_keeps_both_earlier_folders(tmp_path: Path) -> None:
    target = build(output_dir=tmp_path).target
    first = build(output_dir=tmp_path, force=True).previous
    second = build(output_dir=tmp_path, force=True).previous
    assert first is not None and second is not None and first != second
    assert first.is_dir() and second.is_dir() and target.is_dir()


def test_force_over_an_export_of_the_user_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "cc"
    mine.mkdir()
    (mine / "cookiecutter.json").write_text("{}")
    result = run_builder("export-cookiecutter", "--force", "cc", cwd=tmp_path)
    assert result.returncode == 2
    assert "not made by builder" in result.stderr
    assert (mine / "cookiecutter.json").read_text() == "{}"
    assert run_builder("export-cookiecutter", "cc2", cwd=tmp_path).returncode == 0
    again = run_builder("export-cookiecutter", "--force", "cc2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "cc2.before-" in again.stdout


def test_a_dead_runs_work_folder_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    live = WorkFolder(tmp_path, ".svc.")
    # A dead run: its lock file is there but nobody holds the lock.
    dead = tmp_path / ".svc.dead.partial"
    dead.mkdir()
    (dead / LOCK_FILE).write_text("")
    (dead / "big.bin").write_bytes(b"\0" * 1024)
    # A run that died before it made its lock file, long ago.
    old = tmp_path / ".svc.old.partial"
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    # Not ours: another service's folder, and a user's folder that merely looks alike.
    other = tmp_path / ".other.x.partial"
    other.mkdir()
    try:
        removed = remove_dead_work_folders(tmp_path, ".svc.")
        assert sorted(removed) == sorted([dead, old])
        assert live.path.is_dir()
        assert other.is_dir()
    finally:
        live.__exit__(RuntimeError, None, None)
    assert not live.path.exists()


def test_a_work_folder_held_by_another_process_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / ".svc.held.partial"
    folder.mkdir()
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(folder / LOCK_FILE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            assert remove_dead_work_folders(tmp_path, ".svc.") == []
            assert folder.is_dir()
        finally:
            # SIGKILL: the kernel drops the lock even when its holder gets no chance to.
            holder.kill()
    # The holder is dead now: the same folder is a dead run's.
    assert remove_dead_work_folders(tmp_path, ".svc.") == [folder]


@pytest.mark.slow
def test_killed_runs_leave_nothing_after_the_next_run(tmp_path: Path) -> None:
    """SIGKILL at ten points of a run; the next run cleans up after all of them."""
    command = [sys.executable, "-m", "builder", "--pattern", "data-cache", "--force"]
    assert run_builder("--pattern", "data-cache", cwd=tmp_path).returncode == 0
    delays = [0.05 * step for step in range(10)]
    for delay in delays:
        run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        run.send_signal(signal.SIGKILL)
        run.wait()
    result = run_builder("--pattern", "data-cache", "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    hidden = [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]
    assert hidden == []
    assert (tmp_path / "digits-cache" / ".builder-answers.yml").is_file()
    assert not any(path.name == LOCK_FILE for path in (tmp_path / "digits-cache").rglob("*"))
