"""Probe of sqlalchemy_no_asyncio_extra.yml: runs the old form, prints one JSON line."""

import sys

from probekit import emit, error

from importlib import metadata
from packaging.requirements import Requirement
requires = [Requirement(r) for r in metadata.requires("sqlalchemy")]
greenlet = [r for r in requires if r.name == "greenlet"]
in_plain_install = any(r.marker is None or r.marker.evaluate({"extra": ""}) for r in greenlet)
in_asyncio_extra = any(r.marker is not None and r.marker.evaluate({"extra": "asyncio"}) for r in greenlet)
sys.modules["greenlet"] = None        # as if greenlet were not installed
try:
    from sqlalchemy.ext.asyncio import create_async_engine
    outcome = {"raised": None}
except ImportError as exc:
    outcome = error(exc)
emit(**outcome, greenlet_in_plain_install=in_plain_install, greenlet_in_asyncio_extra=in_asyncio_extra)
