"""The CLI's hint and reset commands, on a throwaway clone of the course."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from course.checking import ROOT


def run_cli(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    return subprocess.run([sys.executable, "-m", "course.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_hint_walks_through_the_hints() -> None:
    first = run_cli("hint", "01", cwd=ROOT)
    assert first.returncode == 0 and "hint 1 of" in first.stdout and "course hint 01 2" in first.stdout
    last = run_cli("hint", "01", "99", cwd=ROOT)
    assert last.returncode == 0 and "next:" not in last.stdout


def test_unknown_module_is_a_clear_error() -> None:
    done = run_cli("check", "99", cwd=ROOT)
    assert done.returncode != 0 and "No module '99'" in done.stderr


def test_reset_restores_the_exercise_and_keeps_a_backup(tmp_path) -> None:
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    clone = tmp_path / "course"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    app = clone / "exercises" / "01_database_lifecycle" / "app.py"
    original = app.read_text()
    app.write_text("# my attempt\n")
    done = run_cli("reset", "01", "--yes", cwd=clone, pythonpath=clone)
    assert done.returncode == 0, done.stdout + done.stderr
    assert app.read_text() == original
    backups = list((clone / ".course-backups").glob("01_database_lifecycle-*/app.py"))
    assert len(backups) == 1 and backups[0].read_text() == "# my attempt\n"
