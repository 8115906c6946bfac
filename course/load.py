"""Fire N requests with concurrency C and summarise what came back.

    result = await fire(server.url + "/items/1", n=50, concurrency=50)
    result.statuses   # Counter({500: 46, 200: 4})
    result.p50, result.p95, result.max   # seconds
    print(result)     # one readable paragraph

Works from a notebook (top-level ``await``) and from ``asyncio.run`` in a script.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["LoadResult", "fire", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for an empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class LoadResult:
    """What a burst of requests produced."""

    label: str
    n: int
    concurrency: int
    wall: float
    statuses: collections.Counter = field(default_factory=collections.Counter)
    """HTTP status -> count; transport failures count under the key ``"error"``."""
    errors: collections.Counter = field(default_factory=collections.Counter)
    """Distinct error texts (response detail or transport error) -> count."""
    latencies: list[float] = field(default_factory=list)
    """Per-request latency in seconds, in completion order, for every request that got an answer."""

    @property
    def ok(self) -> int:
        return sum(c for s, c in self.statuses.items() if isinstance(s, int) and 200 <= s < 300)

    @property
    def failed(self) -> int:
        return self.n - self.ok

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)

    @property
    def max(self) -> float:
        return max(self.latencies) if self.latencies else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "n": self.n, "concurrency": self.concurrency, "wall": self.wall,
            "ok": self.ok, "failed": self.failed,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "errors": dict(self.errors), "p50": self.p50, "p95": self.p95, "max": self.max,
        }

    def __str__(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=str))
        lines = [
            f"{self.label}: {self.n} requests, concurrency {self.concurrency}, wall {self.wall:.2f} s",
            f"  statuses  {statuses}",
            f"  latency   p50 {self.p50:.3f} s   p95 {self.p95:.3f} s   max {self.max:.3f} s",
        ]
        for text, count in self.errors.most_common(3):
            lines.append(f"  error x{count}: {text[:160]}")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython display
        p.text(str(self))


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
        return f"{response.status_code}: {detail}"
    except ValueError:
        return f"{response.status_code}: {response.text[:200]}"


async def fire(
    url: str,
    *,
    n: int = 50,
    concurrency: int | None = None,
    method: str = "GET",
    timeout: float = 60.0,
    label: str | None = None,
    client: httpx.AsyncClient | None = None,
    progress: bool | None = None,
    **request_kwargs: Any,
) -> LoadResult:
    """Send ``n`` requests to ``url``, at most ``concurrency`` at a time (default: all at once).

    Every request gets its own latency; non-2xx answers and transport errors (timeouts,
    refused connections) are counted, never raised. A progress bar appears when the burst
    runs longer than two seconds (``progress=False`` turns it off).
    """
    concurrency = concurrency or n
    result = LoadResult(label=label or f"{method} {url}", n=n, concurrency=concurrency, wall=0.0)
    # A fresh connection per request: after an unhandled error uvicorn closes the connection, and a
    # client reusing a kept-alive one would sometimes count a ReadError instead of the real 500.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    own_client = client is None
    client = client or httpx.AsyncClient(timeout=timeout, limits=limits)
    gate = asyncio.Semaphore(concurrency)
    bar = None
    if progress is not False:
        try:
            import ipywidgets  # noqa: F401  (tqdm.auto warns "IProgress not found" without it)
            from tqdm.auto import tqdm
        except ImportError:
            from tqdm.std import tqdm

        bar = tqdm(total=n, desc=result.label[:40], delay=2.0, leave=False)

    async def one() -> None:
        async with gate:
            start = time.perf_counter()
            try:
                response = await client.request(method, url, **request_kwargs)
            except httpx.HTTPError as exc:
                result.statuses["error"] += 1
                result.errors[f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__] += 1
            else:
                result.latencies.append(time.perf_counter() - start)
                result.statuses[response.status_code] += 1
                if response.status_code >= 400:
                    result.errors[_error_text(response)] += 1
            finally:
                if bar is not None:
                    bar.update(1)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(n)))
    finally:
        result.wall = time.perf_counter() - start
        if bar is not None:
            bar.close()
        if own_client:
            await client.aclose()
    return result
