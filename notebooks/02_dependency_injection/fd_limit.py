"""Run the gateway's endpoint code under a small limit of open files, without a server.

    python fd_limit.py UPSTREAM_URL VARIANT [REQUESTS] [CONCURRENCY]

VARIANT is ``leaky`` (``gateway.leaky_quote``: a client per request, never closed) or
``shared`` (``gateway.shared_quote`` with the client the lifespan opens). This process lowers
its own limit of open file descriptors to 64 first (a server's limit is often 1024; 64 gets
there in a few requests). Prints one JSON line: requests that worked, the errors by message,
where they were raised, and the most descriptors open at once.
"""

import asyncio
import collections
import gc
import json
import os
import resource
import sys
import traceback

import gateway

LIMIT = 64


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself holds


async def main(variant: str, n: int, concurrency: int) -> dict:
    settings = gateway.get_settings()
    errors: collections.Counter = collections.Counter()
    ok = peak = 0
    gate = asyncio.Semaphore(concurrency)

    async def one(call) -> None:
        nonlocal ok, peak
        async with gate:
            try:
                await call()
                ok += 1
            except Exception as exc:  # what the endpoint raised: uvicorn would answer 500
                where = traceback.extract_tb(exc.__traceback__)[-1].name  # the function that raised it
                errors[f"{type(exc).__name__}: {exc} (in {where})"] += 1
            try:
                peak = max(peak, open_fds())
            except OSError:  # listing /proc/self/fd needs a descriptor too
                peak = LIMIT

    if variant == "leaky":
        await asyncio.gather(*(one(lambda: gateway.leaky_quote("ACME", settings)) for _ in range(n)))
    else:
        app = gateway.shared_app
        async with gateway.lifespan(app):
            await asyncio.gather(*(one(lambda: gateway.shared_quote("ACME", app.state.client)) for _ in range(n)))
    return {"variant": variant, "ok": ok, "errors": dict(errors), "peak_fds": peak}


if __name__ == "__main__":
    url, variant = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    os.environ["GATEWAY_UPSTREAM_URL"] = url
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))
    # The collector paused: when it would reclaim the forgotten clients differs between Python
    # versions (3.13 sooner than 3.11); paused, the leak shows the same on each.
    gc.disable()
    print(json.dumps(asyncio.run(main(variant, n, concurrency))))
