"""Every notebook runs top to bottom in a fresh kernel, within its budget, stored without
outputs, and leaves nothing listening behind."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from course.manifest import modules
from course.probes import processes_with_env
from course.tooling.nbtools import execute

NOTEBOOKS = [m.notebook for m in modules()]
BUDGET = 60.0  # seconds per notebook on a 2-core machine
HARD_LIMIT = 120.0  # fail beyond this; between the two the run passes but says so


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `make strip`"


@pytest.mark.slow
@pytest.mark.serial  # notebooks assert timing ratios: never two at once
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, record_time) -> None:
    run_id = uuid.uuid4().hex
    seconds = execute(path, env={**os.environ, "COURSE_RUN_ID": run_id})
    record_time(f"notebook {path.name}" + ("  (over the 60 s budget)" if seconds > BUDGET else ""), seconds)
    assert seconds < HARD_LIMIT, f"{path.name} took {seconds:.0f} s (budget {BUDGET:.0f} s)"
    deadline = time.monotonic() + 5
    while (leftover := processes_with_env("COURSE_RUN_ID", run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in leftover]
    for p in leftover:  # do not let one notebook's leftovers disturb the next
        p.kill()
    assert not leftover, f"{path.name} left processes running after its kernel stopped: {described}"
