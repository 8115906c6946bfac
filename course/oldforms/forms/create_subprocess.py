"""Probe of create_subprocess.yml: runs the old form, prints one JSON line."""

import sys

from probekit import emit, error

import asyncio
try:
    asyncio.create_subprocess
    outcome = {"raised": None}
except AttributeError as exc:
    outcome = error(exc)
async def today():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print(42)", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode().strip()
emit(**outcome, today=asyncio.run(today()))
