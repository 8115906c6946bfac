"""`make lab` works: JupyterLab starts through the same code path, serves the course's
notebooks, and a kernel and a terminal run in the course's environment."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from course.manifest import ROOT
from course.processes import stop_tree
from course.server import free_port
from course.tooling import lab
from course.tooling.testkit import run_in_kernel, run_in_terminal

pytestmark = pytest.mark.slow


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


@pytest.fixture(scope="module")
def jupyter():
    port, token = free_port(), secrets.token_hex(16)
    log = tempfile.NamedTemporaryFile(prefix="lab-", suffix=".log", delete=False)
    start = time.perf_counter()
    proc = lab.start(port=port, token=token, open_browser=False, log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        lab.wait_ready(proc, base, token, Path(log.name))
        ready = time.perf_counter() - start
        yield base, token, ready
    finally:
        # Once in a while Jupyter ignores SIGTERM: stop_tree falls back to SIGKILL (kernels included).
        stop_tree(proc, timeout=10)
        Path(log.name).unlink(missing_ok=True)


def test_lab_serves_the_course(jupyter, record_time) -> None:
    base, token, ready = jupyter
    record_time("JupyterLab ready (make lab code path)", ready)
    page = httpx.get(f"{base}/lab", params={"token": token}, timeout=10)
    assert page.status_code == 200 and "JupyterLab" in page.text
    listing = httpx.get(f"{base}/api/contents/notebooks", params={"token": token}, timeout=10).json()
    names = {item["name"] for item in listing["content"]}
    expected = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert expected and expected <= names, f"Lab does not list {expected - names}"
    assert "00_start_here.ipynb" in names
    root = httpx.get(f"{base}/api/contents", params={"token": token}, timeout=10).json()
    clutter = [item["name"] for item in root["content"] if item["name"].endswith(".egg-info")]
    assert not clutter, f"the learner's file browser shows {clutter}"
    config = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S)
    assert config, "no page config in /lab"
    disabled = json.loads(config[1]).get("disabledExtensions", [])
    assert "@jupyterlab/apputils-extension:announcements" in disabled, \
        f"the 'official Jupyter news' prompt is not disabled: {disabled}"
    for folder in ("exercises", "solutions", "checks"):
        r = httpx.get(f"{base}/api/contents/{folder}", params={"token": token}, timeout=10)
        assert r.status_code == 200, f"learners must be able to open {folder}/ in Lab"


def test_kernel_runs_in_course_environment(jupyter) -> None:
    base, token, _ = jupyter
    code = ("import sys, shutil, course; print(sys.executable); print(course.__file__); "
            "print(shutil.which('course'))")
    out = asyncio.run(run_in_kernel(base, code, headers=auth(token))).split()
    assert len(out) == 3, out
    assert Path(out[0]).parent == Path(sys.executable).parent, f"kernel runs {out[0]}, not the course's {sys.executable}"
    assert Path(out[1]).resolve() == (ROOT / "course" / "__init__.py").resolve()
    assert out[2] == str(Path(sys.executable).parent / "course"), "`!course` in a cell would not find the grader"


def test_terminal_finds_the_grader(jupyter) -> None:
    base, token, _ = jupyter
    out = asyncio.run(run_in_terminal(base, "command -v course; echo DONE-$((40+2))", "DONE-42",
                                      headers=auth(token)))
    assert str(Path(sys.executable).parent / "course") in out, f"a Lab terminal does not find `course`:\n{out[-800:]}"
