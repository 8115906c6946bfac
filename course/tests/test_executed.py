"""The executed-notebook store (course.tooling.executed): what the notebook test saves, and when a
saved copy may no longer be read (stale: the notebook or its demo folder changed since)."""

from __future__ import annotations

import json

import pytest

from course.manifest import modules
from course.tooling import executed


def _notebook(path, sources: list[str]) -> None:
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None}
             for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_fingerprint_follows_the_cells_and_the_demo_folder(tmp_path) -> None:
    nb = tmp_path / "99_demo.ipynb"
    _notebook(nb, ["print(1)"])
    first = executed.fingerprint(nb)
    (tmp_path / "99_demo").mkdir()
    (tmp_path / "99_demo" / "app.py").write_text("app = 1\n")
    with_demo = executed.fingerprint(nb)
    assert with_demo != first
    (tmp_path / "99_demo" / "shop.db").write_bytes(b"written by a run")  # what a run writes does not count
    (tmp_path / "99_demo" / "server.log").write_text("log")
    assert executed.fingerprint(nb) == with_demo
    (tmp_path / "99_demo" / "app.py").write_text("app = 2\n")
    assert executed.fingerprint(nb) != with_demo
    _notebook(nb, ["print(2)"])
    assert executed.fingerprint(nb) not in (first, with_demo)


def test_saved_copy_is_fresh_until_the_notebook_changes(tmp_path, monkeypatch) -> None:
    import nbformat

    monkeypatch.setenv("COURSE_EXECUTED_DIR", str(tmp_path / "store"))
    m = modules()[0]
    assert executed.status(m) == "missing" and executed.executed(m) is None
    nb = nbformat.read(m.notebook, as_version=4)
    path = executed.save(nb, m.notebook, 1.5)
    assert path == tmp_path / "store" / m.notebook.name
    assert executed.status(m) == "fresh"
    meta = executed.executed(m).meta
    assert meta["fingerprint"] == executed.fingerprint(m.notebook) and meta["seconds"] == 1.5
    assert meta["libraries"]["fastapi"] and meta["python"]
    executed.save(nb, m.notebook, 1.5, fingerprint_before="0" * 16)  # as if the notebook changed meanwhile
    assert executed.status(m) == "stale" and executed.executed(m) is None
    executed.forget(m.notebook)
    assert executed.status(m) == "missing"


def test_require_skips_naming_the_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COURSE_EXECUTED_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make test"):
        executed.require(modules()[:1])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        executed.require(modules()[:1])
