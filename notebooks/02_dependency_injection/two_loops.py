"""Start and stop the same gateway twice in one process, each time in a new event loop.

    python two_loops.py UPSTREAM_URL cached_app|shared_app

That is what a test suite does: pytest-asyncio gives every test its own event loop and closes
it afterwards. Each round enters the app's lifespan (startup), sends one request through
``httpx.ASGITransport``, leaves the lifespan (shutdown) and ends its event loop. After each
round the script counts the TCP connections this process still holds to the upstream.
Prints one JSON line: {"round 1": status or error, "open after round 1": n, ...}.
"""

import asyncio
import json
import os
import sys

import httpx
import psutil
from asgi_lifespan import LifespanManager


def connections_to(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED")


async def one_round(app) -> int:
    async with LifespanManager(app) as manager:  # startup ... shutdown, like a test's fixture
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            return (await client.get("/quote/ACME")).status_code


if __name__ == "__main__":
    url, variant = sys.argv[1], sys.argv[2]
    os.environ["GATEWAY_UPSTREAM_URL"] = url
    import gateway

    app = getattr(gateway, variant)
    report = {}
    for n in (1, 2):
        try:
            report[f"round {n}"] = asyncio.run(one_round(app))  # a new event loop, closed at the end
        except Exception as exc:
            report[f"round {n}"] = f"{type(exc).__name__}: {exc}"
        report[f"open after round {n}"] = connections_to(httpx.URL(url).port)
    print(json.dumps(report))
