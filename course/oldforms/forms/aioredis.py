"""Probe of aioredis.yml: runs the old form, prints one JSON line."""

from probekit import emit, error

import importlib, importlib.util
try:
    import aioredis
    outcome = {"raised": None}
except ImportError as exc:
    outcome = error(exc)
try:
    import asyncio_redis
    other = None
except ImportError as exc:
    other = type(exc).__name__
import redis.asyncio
emit(**outcome, asyncio_redis=other, redis_asyncio_client=redis.asyncio.Redis.__name__,
     has_aclose=hasattr(redis.asyncio.Redis, "aclose"))
