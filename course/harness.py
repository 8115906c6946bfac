"""Small pieces of lesson plumbing: environment variables for a block, async code from a sync check.

    from course.harness import patched_env, run_sync

    with patched_env(DATABASE_URL=url, POOL_TIMEOUT=30), course.serve_in_thread(app) as server:
        ...                                   # the app reads its settings when the server starts

    def check(endpoint):                      # a challenge's check is a plain function
        result = run_sync(course.fire(url))   # ...that may need to await something
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Awaitable, Iterator, TypeVar

__all__ = ["patched_env", "run_sync"]

T = TypeVar("T")


@contextlib.contextmanager
def patched_env(**values: Any) -> Iterator[None]:
    """Set environment variables (values turned into strings) for the block, then put back what was there.

    Use it around a server whose app reads its settings at startup (in ``lifespan``): the
    settings are the ones in force when the ``with`` block starts the server.
    """
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: str(value) for key, value in values.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_sync(awaitable: Awaitable[T], *, timeout: float = 120.0) -> T:
    """Run a coroutine to completion from synchronous code, on a new event loop in a worker thread.

    A notebook cell already runs inside an event loop, so a plain function called from it (a
    challenge's check) can neither ``await`` nor call ``asyncio.run()``. This runs the coroutine
    in a thread of its own and returns its result (or raises its exception).
    """
    import asyncio

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(_as_coroutine(awaitable))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="course-run-sync", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"run_sync: still running after {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
