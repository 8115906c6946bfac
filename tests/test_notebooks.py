"""Every notebook runs top to bottom in a fresh kernel, is stored without outputs, and leaves
nothing running behind.

How long a notebook takes (budget: 60 s on 2 cores) is ``make bench``'s figure, measured alone
and judged as a ratio; here it is only recorded, never asserted: a busy laptop must not fail
``make test`` for being busy.

``make test`` runs most notebooks two at a time (marked ``paired``): their assertions are counts,
texts, CPU-time and same-run ratios with wide margins. The evidence (issue 16): every notebook two
at a time (``pytest tests/test_notebooks.py -k test_notebook_runs -n 2``), three runs on 2 cores
that other work kept at a load of 8 to 15: 00, 01, 02, 03, 04, 05 and 07 passed every time (04
then took 3 minutes and passed; only the old hard limit failed it). 06 failed twice and 08 once,
each on an absolute tenth of a second: they run alone, last (marked ``serial``). ALONE lists them.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from course.manifest import ROOT, modules
from course.probes import processes_with_env
from course.tooling.nbtools import execute

NOTEBOOKS = [m.notebook for m in modules()]
ALONE = {
    # lag < 0.15 s, < 0.25 s, < 0.5 s, awaiting 20 calls < 0.4 s; paired, cell 25's lag failed 2 of 3.
    "06_sync_to_async": "the event loop's lag in tenths of a second",
    # a reply within 0.3 s, a worker noticing a kill within 2.5 s; paired, 0.31 s failed 1 of 3.
    "08_background_work": "replies and a worker's reaction in tenths of a second",
}
# Not a budget: only a hang guard, ten times a notebook's budget. A hung notebook is stopped and
# reported instead of holding `make test` forever (nbclient's own per-cell timeout is 120 s); a
# slow one passes (04 took 185 s two at a time on 2 cores kept at a load of 8 by other work).
HANG_GUARD = 600


def _marked(path: Path):
    """The notebook as a parameter, marked for the phase of `make test` that runs it."""
    mark = pytest.mark.serial if path.stem in ALONE else pytest.mark.paired
    return pytest.param(path, marks=mark, id=path.stem)


def _longest_first(paths: list[Path]) -> list[Path]:
    """Longest first, by the last recorded `make bench` (bench/last.json): two at a time, a long
    notebook started last would keep one worker busy while the other has nothing left to run."""
    try:
        figures = json.loads((ROOT / "bench" / "last.json").read_text())["figures"]
    except (OSError, ValueError, KeyError):
        return paths
    return sorted(paths, key=lambda p: -figures.get(f"notebook {p.stem}", {}).get("seconds", 0.0))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `make strip`"


@pytest.mark.slow
@pytest.mark.timeout(HANG_GUARD)
@pytest.mark.parametrize("path", [_marked(p) for p in _longest_first(NOTEBOOKS)])
def test_notebook_runs(path: Path, record_time) -> None:
    run_id = uuid.uuid4().hex
    # save=True: the executed copy goes to build/executed for the site, the error index, the impact
    # table and the instructor guide (course.tooling.executed; make test's last phase reads them)
    seconds = execute(path, env={**os.environ, "COURSE_RUN_ID": run_id}, save=True)
    record_time(f"notebook {path.name}" + ("" if path.stem in ALONE else "  (two at a time)"), seconds)
    deadline = time.monotonic() + 5
    while (leftover := processes_with_env("COURSE_RUN_ID", run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in leftover]
    for p in leftover:  # do not let one notebook's leftovers disturb the next
        p.kill()
    assert not leftover, f"{path.name} left processes running after its kernel stopped: {described}"


def test_alone_names_real_notebooks() -> None:
    """A renamed notebook must not silently lose its place among those that run alone."""
    assert set(ALONE) <= {p.stem for p in NOTEBOOKS}, set(ALONE) - {p.stem for p in NOTEBOOKS}
