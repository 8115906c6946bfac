"""Send a generated batch of bad requests to a real server, the same batch every run.

    from course.badinput import run_batch, tally
    outcomes = run_batch(bad_payment, send, n=300)   # [(example, status), ...] in generation order
    tally(outcomes)                                   # Counter({422: 251, 409: 20, 404: 29})

Generation is hypothesis's, derandomised (the same examples on every run with the pinned
hypothesis), with no example database and no shrinking: it is a batch, not a test that hunts for a
minimal failure.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Callable

import httpx

__all__ = ["run_batch", "tally", "json_client", "send_json"]


def run_batch(strategy: Any, send: Callable[[Any], int], *, n: int = 300) -> list[tuple[Any, int]]:
    """Draw up to ``n`` examples from ``strategy`` (derandomised) and ``send`` each one; ``send``
    returns the HTTP status. Returns ``[(example, status)]``."""
    from hypothesis import HealthCheck, Phase, given, settings

    outcomes: list[tuple[Any, int]] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(example: Any) -> None:
        outcomes.append((example, send(example)))

    one()
    return outcomes


def tally(outcomes: list[tuple[Any, int]]) -> collections.Counter:
    """Status code -> how many examples got it."""
    return collections.Counter(status for _, status in outcomes)


def json_client(base_url: str) -> httpx.Client:
    """A client with no kept-alive connections: after a 500 uvicorn closes the connection, and a
    reused one would turn the next request into a transport error instead of its real answer."""
    return httpx.Client(base_url=base_url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def send_json(client: httpx.Client, method: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    """Send ``body`` as JSON the way Python writes it: NaN and Infinity as the bare literals
    ``NaN``/``Infinity``, which JavaScript's JSON.stringify never writes but Python's json (and so
    Starlette's ``request.json()``) reads."""
    return client.request(method, path, content=json.dumps(body), headers={"content-type": "application/json"},
                          **kwargs)
