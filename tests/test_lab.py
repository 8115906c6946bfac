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
import uuid
from pathlib import Path

import httpx
import pytest

from course.tooling import lab
from course.server import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


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
        # Once in a while Jupyter ignores SIGTERM: stop_process falls back to SIGKILL.
        stop_process(proc, timeout=10)
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


async def _run_in_kernel(base: str, token: str, code: str) -> str:
    from tornado.websocket import websocket_connect

    async with httpx.AsyncClient(base_url=base, params={"token": token}, timeout=30) as client:
        r = await client.post("/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kernel_id = r.json()["id"]
        try:
            ws = await websocket_connect(f"{base.replace('http', 'ws')}/api/kernels/{kernel_id}/channels?token={token}")
            msg_id = uuid.uuid4().hex
            ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            out = []
            while True:
                raw = await asyncio.wait_for(ws.read_message(), 60)
                assert raw is not None, "kernel websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("ERROR " + msg["content"]["ename"] + ": " + msg["content"]["evalue"])
                elif msg["msg_type"] == "execute_reply":
                    break
            ws.close()
            return "".join(out)
        finally:
            await client.delete(f"/api/kernels/{kernel_id}")


def test_kernel_runs_in_course_environment(jupyter) -> None:
    base, token, _ = jupyter
    code = ("import sys, shutil, course; print(sys.executable); print(course.__file__); "
            "print(shutil.which('course'))")
    out = asyncio.run(_run_in_kernel(base, token, code)).split()
    assert len(out) == 3, out
    assert Path(out[0]).parent == Path(sys.executable).parent, f"kernel runs {out[0]}, not the course's {sys.executable}"
    assert Path(out[1]).resolve() == (ROOT / "course" / "__init__.py").resolve()
    assert out[2] == str(Path(sys.executable).parent / "course"), "`!course` in a cell would not find the grader"


async def _run_in_terminal(base: str, token: str, command: str, marker: str) -> str:
    from tornado.websocket import websocket_connect

    async with httpx.AsyncClient(base_url=base, params={"token": token}, timeout=30) as client:
        r = await client.post("/api/terminals")
        assert r.status_code == 200, r.text
        name = r.json()["name"]
        try:
            ws = await websocket_connect(f"{base.replace('http', 'ws')}/terminals/websocket/{name}?token={token}")
            ws.write_message(json.dumps(["stdin", command + "\r"]))
            seen = ""
            deadline = time.monotonic() + 30
            while marker not in seen.split(command)[-1] and time.monotonic() < deadline:
                raw = await asyncio.wait_for(ws.read_message(), 30)
                if raw is None:
                    break
                msg = json.loads(raw)
                if msg[0] == "stdout":
                    seen += msg[1]
            ws.close()
            return seen
        finally:
            await client.delete(f"/api/terminals/{name}")


def test_terminal_finds_the_grader(jupyter) -> None:
    base, token, _ = jupyter
    out = asyncio.run(_run_in_terminal(base, token, "command -v course; echo DONE-$((40+2))", "DONE-42"))
    assert str(Path(sys.executable).parent / "course") in out, f"a Lab terminal does not find `course`:\n{out[-800:]}"
