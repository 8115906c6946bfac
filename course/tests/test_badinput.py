"""course.badinput: the same generated batch every run, sent for real, NaN written as Python writes it."""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI, Request
from hypothesis import strategies as st

import course
from course.badinput import json_client, run_batch, send_json, tally


def test_batch_is_derandomised_and_complete() -> None:
    strategy = st.one_of(st.integers(), st.text(max_size=4), st.floats())
    first = run_batch(strategy, lambda ex: 200, n=60)
    second = run_batch(strategy, lambda ex: 200, n=60)
    assert len(first) == 60
    assert repr(first) == repr(second)  # the same examples, in the same order
    assert tally(first) == {200: 60}


def test_sends_to_a_real_server_with_nan_literals() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"raw": (await request.body()).decode()}

    with course.serve_in_thread(app) as server, json_client(server.url) as client:
        r = send_json(client, "POST", "/echo", {"amount": float("nan"), "n": [1]})
        outcomes = run_batch(st.integers(0, 3), lambda ex: send_json(client, "POST", "/echo", ex).status_code, n=4)
    assert r.status_code == 200 and r.json()["raw"] == json.dumps({"amount": float("nan"), "n": [1]})
    assert '"amount": NaN' in r.json()["raw"]
    assert tally(outcomes) == {200: len(outcomes)} and outcomes
    assert isinstance(client, httpx.Client)
