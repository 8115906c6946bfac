"""Throwaway databases for lessons: is PostgreSQL here, and a sandbox role that is always dropped.

    from course.databases import postgres_available, pg_sandbox, pg_leftovers, role_connections

    if await postgres_available():
        async with pg_sandbox("course01") as pg:      # a login role and a database it owns
            await pg.admin.execute(f'ALTER ROLE "{pg.role}" CONNECTION LIMIT 20')
            ...                                    # run an app against pg.url
            await role_connections(pg)             # what PostgreSQL counts for that role
        await pg_leftovers(prefix)                 # a run's own prefix: what it left ([])

Limits are set on the throwaway role (``ALTER ROLE ... CONNECTION LIMIT``, ``ALTER ROLE ... SET
idle_session_timeout``), never on the shared server, and the role and its database are dropped
when the block ends, also when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import types
import uuid
from typing import Any, AsyncIterator

from course.services import services_required

__all__ = ["PG_ADMIN", "RUN_TAG", "pg_admin", "postgres_available", "pg_sandbox", "pg_leftovers", "pg_tagged",
           "role_connections", "wait_for_role_connections"]

RUN_TAG = "course-run:"  # the comment pg_sandbox gives its role and database under COURSE_RUN_ID
PG_ADMIN: dict[str, Any] = dict(host="127.0.0.1", port=5432, user="postgres", database="postgres")
"""The course's PostgreSQL: 127.0.0.1:5432, user postgres, trust authentication. The one place
that says so (the lessons' helpers, the workshop's tests)."""


async def postgres_available(*, timeout: float = 3.0) -> bool:
    """True if PostgreSQL answers at ``PG_ADMIN``; prints its version or why the section is skipped.

    Under ``COURSE_REQUIRE_SERVICES=1`` (CI sets it; see course.services) an unreachable server
    raises ``RuntimeError`` instead of returning False: skipping is then an error.
    """
    import asyncpg

    try:
        probe = await pg_admin(timeout=timeout)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        where = f"{PG_ADMIN['host']}:{PG_ADMIN['port']}"
        if services_required():
            raise RuntimeError(f"COURSE_REQUIRE_SERVICES=1 but PostgreSQL is not reachable at {where}") from exc
        print(f"PostgreSQL is not reachable at {where} ({exc!r}).\n"
              "This section is skipped. Start PostgreSQL and run it again to see it.")
        return False
    try:
        print("PostgreSQL", await probe.fetchval("SHOW server_version"))
    finally:
        await probe.close()
    return True


async def pg_admin(*, timeout: float = 5.0) -> Any:
    """An asyncpg connection to the course's PostgreSQL as its superuser (``PG_ADMIN``): for creating
    and dropping throwaway roles and databases. Close it when done."""
    import asyncpg

    return await asyncpg.connect(**PG_ADMIN, timeout=timeout)


def _sandbox_prefix(prefix: str) -> str:
    """``prefix`` as a name can carry it: lower case, dashes to underscores, one ``_`` at the end
    (``asynctesting.run_prefix``'s ``course04-3f9a1c2e-`` becomes ``course04_3f9a1c2e_``)."""
    return re.sub(r"[^a-z0-9_]", "_", prefix.lower()).rstrip("_") + "_"


@contextlib.asynccontextmanager
async def pg_sandbox(prefix: str = "course") -> AsyncIterator[types.SimpleNamespace]:
    """A throwaway login role and a database it owns, both named ``<prefix>_<random>``: unique even
    when learners in separate containers share one PostgreSQL server. The one way the course makes
    a PostgreSQL database for a lesson or a test run.

    Yields ``admin`` (an asyncpg connection as postgres), ``role`` (the name, also the database's)
    and ``url`` (a SQLAlchemy ``postgresql+asyncpg://`` URL that logs in as the role, which owns the
    database and so may create tables in it). Both are dropped on exit, also on failure
    (``DROP DATABASE ... WITH (FORCE)`` ends the role's sessions first, e.g. a failed test's).
    Give a prefix unique to the run (``asynctesting.run_prefix``) to check with :func:`pg_leftovers`.
    """
    name = f"{_sandbox_prefix(prefix)}{uuid.uuid4().hex[:12]}"
    admin = await pg_admin()
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN')
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        if os.environ.get("COURSE_RUN_ID"):  # so a test run (the workshop hub's) can find what it left
            tag = RUN_TAG + os.environ["COURSE_RUN_ID"]
            await admin.execute(f"COMMENT ON ROLE \"{name}\" IS '{tag}'")
            await admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{tag}'")
        yield types.SimpleNamespace(admin=admin, role=name,
                                    url=f"postgresql+asyncpg://{name}@{PG_ADMIN['host']}:{PG_ADMIN['port']}/{name}")
    finally:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        finally:
            await admin.close()


async def pg_tagged(run_id: str) -> list[str]:
    """Databases and roles a :func:`pg_sandbox` made under ``COURSE_RUN_ID=run_id`` that still exist."""
    admin = await pg_admin()
    try:
        rows = await admin.fetch(
            "SELECT d.datname FROM pg_database d JOIN pg_shdescription s ON s.objoid = d.oid "
            "AND s.classoid = 'pg_database'::regclass WHERE s.description = $1 "
            "UNION SELECT r.rolname FROM pg_roles r JOIN pg_shdescription s ON s.objoid = r.oid "
            "AND s.classoid = 'pg_authid'::regclass WHERE s.description = $1", RUN_TAG + run_id)
    finally:
        await admin.close()
    return sorted(r[0] for r in rows)


async def pg_leftovers(prefix: str) -> list[str]:
    """Databases and roles named as :func:`pg_sandbox` names them for ``prefix`` that still exist."""
    admin = await pg_admin()
    try:
        rows = await admin.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1) "
                                 "UNION SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
                                 _sandbox_prefix(prefix))
    finally:
        await admin.close()
    return sorted(r[0] for r in rows)


async def role_connections(pg: types.SimpleNamespace) -> int:
    """How many server processes the sandbox role has right now (PostgreSQL's ``pg_stat_activity``)."""
    return await pg.admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", pg.role)


async def wait_for_role_connections(pg: types.SimpleNamespace, expected: int = 0, *, timeout: float = 5.0) -> int:
    """Poll ``role_connections`` until it equals ``expected`` or ``timeout`` passes; returns the last count.

    A server that has just stopped closes its connections, but PostgreSQL's view lags a moment.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await role_connections(pg)) != expected and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return count
