"""What the course's own test suites share: tests/ and workshop/tests/.

Neither folder is a package and pytest's importlib mode puts neither on ``sys.path``, so what both
need lives here, in the installed ``course``:

* :func:`need`: skip when a test tool is missing (naming the command that installs it); fail in CI.
* :func:`run_in_kernel` and :func:`run_in_terminal`: drive a running Jupyter server (``make lab``'s,
  or a learner's behind JupyterHub) the way a learner does, over its websockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from typing import Mapping

import httpx
import pytest

from course.manifest import ROOT

__all__ = ["TEST_TOOLS", "need", "run_in_kernel", "run_in_terminal"]

TEST_TOOLS = ROOT / ".venv-test" / "bin"
"""The test-tools environment (``make test-tools``: Playwright, schemathesis), apart from the
learner's .venv."""


def need(present: bool, what: str, command: str) -> None:
    """Skip when a test tool is missing, naming the command that installs it; in CI (``CI=true``),
    fail: CI must run the test, and a skip would hide that it did not."""
    if present:
        return
    message = f"{what} is missing; install it with: {command}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: CI must run this test, not skip it)", pytrace=False)
    pytest.skip(message)


def _ws_url(base: str, path: str) -> str:
    return base.replace("http", "ws", 1) + path


def _client(base: str, headers: Mapping[str, str]) -> httpx.AsyncClient:
    """The REST client beside the websockets, with the same authentication."""
    return httpx.AsyncClient(base_url=base, headers=dict(headers), timeout=60)


async def run_in_kernel(base: str, code: str, *, headers: Mapping[str, str], timeout: float = 60,
                        who: str = "the server") -> str:
    """Start a kernel on the Jupyter server at ``base`` (``POST /api/kernels``), execute ``code``,
    return what it printed (an error as ``ERROR name: value`` and the end of its traceback), and shut
    the kernel down. ``headers`` authenticate (``{"Authorization": "token ..."}``); ``who`` names
    the server in failures."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async with _client(base, headers) as client:
        r = await client.post("/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, f"{who}: starting a kernel: {r.status_code} {r.text}"
        kernel_id = r.json()["id"]
        try:
            ws = await websocket_connect(HTTPRequest(_ws_url(base, f"/api/kernels/{kernel_id}/channels"),
                                                     headers=dict(headers)))
            msg_id = uuid.uuid4().hex
            ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": "course-tests", "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            out: list[str] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                raw = await asyncio.wait_for(ws.read_message(), max(1.0, deadline - loop.time()))
                assert raw is not None, f"{who}: the kernel's websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append(f"ERROR {msg['content']['ename']}: {msg['content']['evalue']}\n"
                               + "\n".join(msg["content"].get("traceback", [])[-3:]))
                elif msg["msg_type"] == "execute_reply":
                    break
            ws.close()
            return "".join(out)
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await client.delete(f"/api/kernels/{kernel_id}")


async def run_in_terminal(base: str, command: str, marker: str, *, headers: Mapping[str, str],
                          timeout: float = 30, who: str = "the server") -> str:
    """Open a terminal on the Jupyter server at ``base``, type ``command`` and return what the
    terminal shows once ``marker`` appears after the command's echo (or at ``timeout``); the
    terminal is closed afterwards. Let the command print the marker last, computed
    (``echo DONE-$((40+2))``), so the echo of the typed line does not count."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async with _client(base, headers) as client:
        r = await client.post("/api/terminals")
        assert r.status_code == 200, f"{who}: opening a terminal: {r.status_code} {r.text}"
        name = r.json()["name"]
        try:
            ws = await websocket_connect(HTTPRequest(_ws_url(base, f"/terminals/websocket/{name}"),
                                                     headers=dict(headers)))
            ws.write_message(json.dumps(["stdin", command + "\r"]))
            seen = ""
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while marker not in seen.split(command)[-1] and loop.time() < deadline:
                raw = await asyncio.wait_for(ws.read_message(), max(1.0, deadline - loop.time()))
                if raw is None:
                    break
                msg = json.loads(raw)
                if msg[0] == "stdout":
                    seen += msg[1]
            ws.close()
            return seen
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await client.delete(f"/api/terminals/{name}")
