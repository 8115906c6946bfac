"""Old forms a learner meets in blog posts and in the course brief, beside today's form.

Each entry holds the old code, what it really does with the pinned versions, today's form, the
module that teaches it, and a *probe*: a small Python program that runs the old form and prints
one line of JSON saying what happened. ``tests/test_old_forms.py`` runs every probe and checks
its JSON against ``expect``, so the page cannot drift from the libraries.

    python -m course.oldforms > OLD_FORMS.md     # regenerate the page
    python -m course.oldforms --check            # run the probes, print what each saw

Probes run in a subprocess of this interpreter (``python -I``, a clean environment, a fresh
temporary working directory), never in the caller's process: several of them create event loops,
patch ``sys.modules`` or start a server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["OldForm", "FORMS", "render", "main", "run_probe", "probe_source", "check", "source_problems"]

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "OLD_FORMS.md"
REGENERATE = "python -m course.oldforms > OLD_FORMS.md"
PROBE_TIMEOUT = 15.0
# Variables that change what a probe sees (colours in pytest's output, extra pytest options,
# warning filters, asyncio debug mode). `python -I` ignores PYTHON*; the inner pytest runs get
# the same clean environment.
DROP_FROM_ENV = ("FORCE_COLOR", "PY_COLORS", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONWARNINGS",
                 "PYTHONDEVMODE", "PYTHONASYNCIODEBUG", "PYTHONPATH")


def _code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


@dataclass(frozen=True)
class OldForm:
    key: str              # short id, also the page anchor
    title: str            # the old form in a few words (Markdown)
    today_title: str      # today's form in a few words (Markdown)
    seen_in: str          # where a learner meets the old form
    old: str              # the old code as a learner meets it
    today: str            # today's form (code; must compile)
    what_happens: str     # what the old form does with the pinned versions
    where: str            # the notebook or module that teaches today's form
    probe: str            # runs the old form, prints one JSON line (PRELUDE is prepended)
    expect: dict[str, Any]  # checked against the probe's JSON (see `check`)
    packages: tuple[str, ...] = ()  # distributions whose versions the outcome depends on
    sources: tuple[tuple[str, int | None, str], ...] = ()  # (path, line, text on that line)


# Prepended to every probe. Probes print exactly one JSON line, with `emit`.
PRELUDE = _code('''
    import json, os, re, subprocess, sys, tempfile, warnings
    import xml.etree.ElementTree as ET


    def emit(**outcome):
        print(json.dumps(outcome, default=repr), flush=True)


    def error(exc):
        """The outcome keys for an exception: its type, message and cause."""
        out = {"raised": type(exc).__name__, "message": " ".join(str(exc).split())}
        if exc.__cause__ is not None:
            out["cause"] = type(exc.__cause__).__name__
        return out


    def printed_by_default(source, **names):
        """The warnings Python would print if `source` ran in an imported module (not __main__)
        with the interpreter's default filters (probes run with `python -I`: no PYTHONWARNINGS)."""
        with warnings.catch_warnings(record=True) as seen:
            exec(compile(source, "app_module.py", "exec"), {"__name__": "app_module", **names})
        return seen


    PYTEST_INI = """[pytest]
    asyncio_mode = strict
    asyncio_default_fixture_loop_scope = function
    asyncio_default_test_loop_scope = function
    """


    def run_pytest(files, timeout=12):
        """Run `python -m pytest` on `files` ({name: source}) in a temporary folder, with the
        course's strict asyncio settings; return {"tests": {name: [outcome, message]}, ...}."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("FORCE_COLOR", "PY_COLORS", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
        with tempfile.TemporaryDirectory(prefix="oldforms-pytest-") as folder:
            for name, source in {"pytest.ini": PYTEST_INI, **files}.items():
                with open(os.path.join(folder, name), "w") as f:
                    f.write(source)
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider",
                 "-p", "no:xdist", "--junitxml=report.xml"],
                cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
            tests = {}
            for case in ET.parse(os.path.join(folder, "report.xml")).iter("testcase"):
                outcome, message = "passed", ""
                for tag, name in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
                    node = case.find(tag)
                    if node is not None:
                        outcome = name
                        message = " ".join(((node.get("message") or "") + " " + (node.text or "")).split())
                        break
                tests[case.get("name")] = [outcome, message]
        lines = done.stdout.strip().splitlines()
        summary = lines[-1] if lines else ""
        found = re.search(r"(\\d+) warnings?", summary)
        return {"returncode": done.returncode, "tests": tests, "warnings": int(found.group(1)) if found else 0}
''')


def is_shell(code: str) -> bool:
    """A snippet that is a command line (pip, celery), not Python."""
    return code.split(maxsplit=1)[0] in ("pip", "celery")


FORMS: list[OldForm] = [
    OldForm(
        key="pydantic-optional",
        title="`from pydantic import Optional`",
        today_title="`from typing import Optional`, or `str | None`",
        seen_in="the course brief (§3, Pydantic partial updates)",
        old=_code('''
            from pydantic import BaseModel, Optional

            class UserUpdate(BaseModel):
                name: Optional[str] = None
        '''),
        today=_code('''
            from pydantic import BaseModel

            class UserUpdate(BaseModel):
                name: str | None = None      # or: from typing import Optional; Optional[str]
        '''),
        what_happens=("`ImportError: cannot import name 'Optional' from 'pydantic'`. Pydantic never exported "
                      "`Optional`: it is `typing.Optional`, and the snippet fails on its first line."),
        where="notebooks/03_partial_updates.ipynb, section \"2 · Only what was sent: `exclude_unset`\" (Old forms)",
        probe=_code('''
            try:
                from pydantic import Optional
            except ImportError as exc:
                outcome = error(exc)
            else:
                outcome = {"raised": None}
            from pydantic import BaseModel
            class UserUpdate(BaseModel):
                name: str | None = None
            emit(**outcome, today=UserUpdate().model_dump())
        '''),
        expect={"raised": "ImportError", "message": "cannot import name 'Optional' from 'pydantic'",
                "today": {"name": None}},
        packages=("pydantic",),
        sources=(("pydantic/_migration.py", 315, "raise AttributeError(f'module {module!r} has no attribute {name!r}')"),),
    ),
    OldForm(
        key="model-dict",
        title="`update.dict(exclude_unset=True)`",
        today_title="`update.model_dump(exclude_unset=True)`",
        seen_in="the course brief (§3, Pydantic partial updates) and Pydantic v1 tutorials",
        old=_code('''
            update_data = update.dict(exclude_unset=True)
        '''),
        today=_code('''
            update_data = update.model_dump(exclude_unset=True)
        '''),
        what_happens=("Still works and returns the same dict, but warns ``PydanticDeprecatedSince20: The `dict` "
                      "method is deprecated; use `model_dump` instead.`` It is a `DeprecationWarning`, so Python "
                      "prints nothing when the call is in an imported module (your app); pytest lists it in its "
                      "warnings summary. Pydantic says it goes in V3."),
        where="notebooks/03_partial_updates.ipynb, section \"2 · Only what was sent: `exclude_unset`\" (Old forms)",
        probe=_code('''
            from pydantic import BaseModel
            class UserUpdate(BaseModel):
                name: str | None = None
                email: str | None = None
            update = UserUpdate(name="Alice")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = update.dict(exclude_unset=True)
                today = update.model_dump(exclude_unset=True)
            (w,) = caught
            printed = printed_by_default("update.dict(exclude_unset=True)", update=update)
            run = run_pytest({"test_dict.py": (
                "from pydantic import BaseModel\\n"
                "class UserUpdate(BaseModel):\\n    name: str | None = None\\n"
                "def test_dict():\\n    assert UserUpdate(name='A').dict(exclude_unset=True) == {'name': 'A'}\\n")})
            emit(warning=w.category.__name__, message=str(w.message),
                 deprecation=issubclass(w.category, DeprecationWarning), result=result,
                 printed_by_default=[x.category.__name__ for x in printed],
                 under_pytest=[run["tests"]["test_dict"][0], run["warnings"]], today=today)
        '''),
        expect={"warning": "PydanticDeprecatedSince20", "deprecation": True,
                "message": "The `dict` method is deprecated; use `model_dump` instead.",
                "result": {"name": "Alice"}, "printed_by_default": [], "under_pytest": ["passed", 1],
                "today": {"name": "Alice"}},
        packages=("pydantic",),
        sources=(("pydantic/main.py", 1403, "category=PydanticDeprecatedSince20,"),
                 ("pydantic/warnings.py", 23, "class PydanticDeprecationWarning(DeprecationWarning):")),
    ),
    OldForm(
        key="orm-mode",
        title="`class Config: orm_mode = True`",
        today_title="`model_config = ConfigDict(from_attributes=True)`",
        seen_in="Pydantic v1 and FastAPI SQL tutorials (response models built from ORM objects)",
        old=_code('''
            class UserOut(BaseModel):
                name: str

                class Config:
                    orm_mode = True

            UserOut.from_orm(user)
        '''),
        today=_code('''
            from pydantic import BaseModel, ConfigDict

            class UserOut(BaseModel):
                model_config = ConfigDict(from_attributes=True)
                name: str

            UserOut.model_validate(user)  # a response_model needs neither: FastAPI reads attributes itself
        '''),
        what_happens=("The class still builds, with two warnings: ``PydanticDeprecatedSince20: Support for "
                      "class-based `config` is deprecated`` and ``UserWarning: Valid config keys have changed in "
                      "V2: * 'orm_mode' has been renamed to 'from_attributes'``. But the key is not translated: "
                      "`UserOut.from_orm(user)` raises ``PydanticUserError: You must set the config attribute "
                      "`from_attributes=True` to use from_orm``, and `model_validate(user)` fails with a `model_type` "
                      "validation error. As a FastAPI `response_model` it still works, because FastAPI validates "
                      "the return value with `from_attributes=True` itself."),
        where="notebooks/03_partial_updates.ipynb, section \"5 · 404, 422, never a 500\"",
        probe=_code('''
            from types import SimpleNamespace
            from pydantic import BaseModel, ConfigDict, ValidationError
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                class UserOut(BaseModel):
                    name: str
                    class Config:
                        orm_mode = True
            user = SimpleNamespace(name="Ada")
            try:
                UserOut.from_orm(user)
            except Exception as exc:
                outcome = error(exc)
            else:
                outcome = {"raised": None}
            try:
                UserOut.model_validate(user)
            except ValidationError as exc:
                outcome["model_validate"] = exc.errors()[0]["type"]
            class Today(BaseModel):
                model_config = ConfigDict(from_attributes=True)
                name: str
            emit(**outcome, warnings=sorted({w.category.__name__ for w in caught}),
                 renamed=any("'orm_mode' has been renamed to 'from_attributes'" in str(w.message) for w in caught),
                 today=Today.model_validate(user).name)
        '''),
        expect={"raised": "PydanticUserError",
                "message": "You must set the config attribute `from_attributes=True` to use from_orm",
                "model_validate": "model_type",
                "warnings": ["PydanticDeprecatedSince20", "UserWarning"], "renamed": True, "today": "Ada"},
        packages=("pydantic",),
        sources=(("pydantic/_internal/_config.py", 383, "'orm_mode': 'from_attributes',"),
                 ("pydantic/_internal/_config.py", 408, "warnings.warn(message, UserWarning)")),
    ),
    OldForm(
        key="validator",
        title="`@validator('number')`",
        today_title="`@field_validator('number')` + `@classmethod`",
        seen_in="the course brief (§5, the production conversion) and Pydantic v1 tutorials",
        old=_code('''
            from pydantic import BaseModel, Field, validator

            class CreditCard(BaseModel):
                number: str = Field(..., min_length=13, max_length=19)

                @validator('number')
                def luhn_check(cls, v):
                    if not luhn_valid(v):
                        raise ValueError('Invalid card number')
                    return v
        '''),
        today=_code('''
            from pydantic import BaseModel, Field, field_validator

            class CreditCard(BaseModel):
                number: str = Field(min_length=13, max_length=19)

                @field_validator("number")
                @classmethod
                def luhn_check(cls, v: str) -> str:
                    if not luhn_valid(v):
                        raise ValueError("Invalid card number")
                    return v
        '''),
        what_happens=("Still validates (a bad number still raises a `ValidationError`), but the "
                      "class definition warns ``PydanticDeprecatedSince20: Pydantic V1 style `@validator` validators "
                      "are deprecated. You should migrate to Pydantic V2 style `@field_validator` validators``. "
                      "A `DeprecationWarning`: silent in an imported module, listed by pytest. Pydantic says it "
                      "goes in V3."),
        where="notebooks/05_function_to_endpoint.ipynb, section \"4 · The production version\" (Old forms: `@validator` and `.dict()`)",
        probe=_code('''
            SOURCE = """
            from pydantic import BaseModel, Field, validator
            class CreditCard(BaseModel):
                number: str = Field(..., min_length=13, max_length=19)
                @validator('number')
                def luhn_check(cls, v):
                    if not v.isdigit():
                        raise ValueError('Invalid card number')
                    return v
            """
            import textwrap
            SOURCE = textwrap.dedent(SOURCE)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                namespace = {"__name__": "__main__"}
                exec(SOURCE, namespace)
            (w,) = caught
            from pydantic import ValidationError
            try:
                namespace["CreditCard"](number="4111-1111-1111")
                still_validates = False
            except ValidationError as exc:
                still_validates = "Invalid card number" in str(exc)
            from pydantic import BaseModel, Field, field_validator
            with warnings.catch_warnings(record=True) as today_warnings:
                warnings.simplefilter("always")
                class Card(BaseModel):
                    number: str = Field(min_length=13, max_length=19)
                    @field_validator("number")
                    @classmethod
                    def luhn_check(cls, v: str) -> str:
                        if not v.isdigit():
                            raise ValueError("Invalid card number")
                        return v
            try:
                Card(number="4111-1111-1111")
                today = "accepted"
            except ValidationError as exc:
                today = "rejected" if "Invalid card number" in str(exc) else str(exc)
            run = run_pytest({"test_card.py": SOURCE + "\\ndef test_card():\\n    assert CreditCard(number='4111111111111111')\\n"})
            emit(warning=w.category.__name__, message=str(w.message), still_validates=still_validates,
                 under_pytest=[run["tests"]["test_card"][0], run["warnings"]],
                 printed_by_default=[x.category.__name__ for x in printed_by_default(SOURCE)], today=today, today_warnings=len(today_warnings))
        '''),
        expect={"warning": "PydanticDeprecatedSince20",
                "message": "Pydantic V1 style `@validator` validators are deprecated.",
                "still_validates": True, "printed_by_default": [], "under_pytest": ["passed", 1], "today": "rejected",
                "today_warnings": 0},
        packages=("pydantic",),
        sources=(("pydantic/deprecated/class_validators.py", 114, "'Pydantic V1 style `@validator` validators are deprecated.'"),
                 ("pydantic/deprecated/class_validators.py", 74, "DeprecationWarning = PydanticDeprecatedSince20")),
    ),
    OldForm(
        key="sync-create-engine",
        title="`engine.create_engine()`: a sync engine on an async driver",
        today_title="`create_async_engine(...)` in `lifespan`",
        seen_in="the course brief (§1: \"most FastAPI tutorials show simple `engine.create_engine()`\")",
        old=_code('''
            from sqlalchemy import create_engine, text

            engine = create_engine("sqlite+aiosqlite:///app.db")   # or postgresql+asyncpg://...
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        '''),
        today=_code('''
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine("sqlite+aiosqlite:///app.db")   # in lifespan; dispose on shutdown
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            await engine.dispose()
        '''),
        what_happens=("`create_engine` accepts the async URL without complaint; `engine.connect()` raises "
                      "`sqlalchemy.exc.MissingGreenlet: greenlet_spawn has not been called; can't call await_() "
                      "here.` There is no `engine.create_engine()` either: on an `AsyncEngine` it is an "
                      "`AttributeError`."),
        where="notebooks/01_database_lifecycle.ipynb, section \"Who closes the connections?\"",
        probe=_code('''
            import asyncio
            from sqlalchemy import create_engine, text
            from sqlalchemy.ext.asyncio import create_async_engine
            engine = create_engine("sqlite+aiosqlite:///:memory:")   # no error here
            async_url_accepted = engine.dialect.is_async
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                outcome = {"raised": None}
            except Exception as exc:
                outcome = error(exc)
            finally:
                engine.dispose()
            async def today():
                engine = create_async_engine("sqlite+aiosqlite:///:memory:")
                try:
                    try:
                        engine.create_engine()
                    except AttributeError as exc:
                        attribute = str(exc)
                    async with engine.connect() as conn:
                        return attribute, (await conn.execute(text("SELECT 1"))).scalar()
                finally:
                    await engine.dispose()
            attribute, value = asyncio.run(today())
            emit(**outcome, async_url_accepted=async_url_accepted, engine_create_engine=attribute, today=value)
        '''),
        expect={"raised": "MissingGreenlet", "message": "greenlet_spawn has not been called",
                "async_url_accepted": True, "engine_create_engine": "'AsyncEngine' object has no attribute 'create_engine'",
                "today": 1},
        packages=("sqlalchemy", "aiosqlite"),
        sources=(("sqlalchemy/util/concurrency.py", 161, "raise exc.MissingGreenlet("),),
    ),
    OldForm(
        key="asyncsession-expire-on-commit",
        title="`AsyncSession(engine)` everywhere",
        today_title="`async_sessionmaker(engine, expire_on_commit=False)`",
        seen_in="the course brief (§1 `get_db`, §2, §4 fixtures)",
        old=_code('''
            async with AsyncSession(engine) as session:
                user = User(name="Alice")
                session.add(user)
                await session.commit()
                return {"name": user.name}          # attribute access after commit
        '''),
        today=_code('''
            sessions = async_sessionmaker(engine, expire_on_commit=False)   # once, in lifespan

            async with sessions() as session:
                user = User(name="Alice")
                session.add(user)
                await session.commit()
                return {"name": user.name}          # still loaded: no I/O
        '''),
        what_happens=("`commit()` expires every loaded object (`expire_on_commit` defaults to `True`), so reading "
                      "`user.name` afterwards starts a lazy load: a query from inside a plain attribute access, "
                      "where the async driver cannot be awaited: `StatementError: (sqlalchemy.exc.MissingGreenlet) greenlet_spawn has not been called; "
                      "can't call await_() here` (with aiosqlite; the cause is `MissingGreenlet`). Note that "
                      "`async_sessionmaker` alone does not fix it: its default is also `expire_on_commit=True`."),
        where="notebooks/01_database_lifecycle.ipynb, section \"After the commit: `MissingGreenlet`\"",
        probe=_code('''
            import asyncio
            from sqlalchemy import String
            from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
            class Base(DeclarativeBase):
                pass
            class User(Base):
                __tablename__ = "users"
                id: Mapped[int] = mapped_column(primary_key=True)
                name: Mapped[str] = mapped_column(String(50))
            async def main():
                engine = create_async_engine("sqlite+aiosqlite:///:memory:")
                try:
                    async with engine.begin() as conn:
                        await conn.run_sync(Base.metadata.create_all)
                    async with AsyncSession(engine) as session:
                        user = User(name="Alice")
                        session.add(user)
                        await session.commit()
                        try:
                            outcome = {"raised": None, "behaviour": user.name}
                        except Exception as exc:
                            outcome = error(exc)
                    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                        user = User(name="Bob")
                        session.add(user)
                        await session.commit()
                        outcome["today"] = user.name
                    return outcome
                finally:
                    await engine.dispose()
            warnings.simplefilter("ignore", RuntimeWarning)  # the lazy load leaves a coroutine never awaited
            emit(**asyncio.run(main()))
        '''),
        expect={"raised": "StatementError", "cause": "MissingGreenlet",
                "message": "(sqlalchemy.exc.MissingGreenlet) greenlet_spawn has not been called", "today": "Bob"},
        packages=("sqlalchemy", "aiosqlite"),
        sources=(("sqlalchemy/orm/session.py", 1625, "expire_on_commit: bool = True,"),
                 ("sqlalchemy/ext/asyncio/session.py", 2024, "expire_on_commit: bool = True,")),
    ),
    OldForm(
        key="asyncclient-app",
        title="`AsyncClient(app=app)`",
        today_title="`AsyncClient(transport=ASGITransport(app=app))`",
        seen_in="the course brief (§4, async testing) and async-testing posts written for httpx < 0.28",
        old=_code('''
            async with AsyncClient(app=app, base_url="http://test") as ac:
                yield ac
        '''),
        today=_code('''
            from asgi_lifespan import LifespanManager
            from httpx import ASGITransport, AsyncClient

            async with LifespanManager(app) as manager:      # ASGITransport does not run the lifespan
                transport = ASGITransport(app=manager.app)
                async with AsyncClient(transport=transport, base_url="http://test") as ac:
                    yield ac
        '''),
        what_happens=("`TypeError: AsyncClient.__init__() got an unexpected keyword argument 'app'`: the `app=` "
                      "shortcut was removed in httpx 0.28."),
        where=("notebooks/04_async_testing.ipynb, sections \"The lifespan a test client skips\" "
               "and \"Old forms you will still meet\""),
        probe=_code('''
            import asyncio, httpx
            from fastapi import FastAPI
            app = FastAPI()
            @app.get("/ping")
            async def ping():
                return {"ok": True}
            try:
                httpx.AsyncClient(app=app, base_url="http://test")
                outcome = {"raised": None}
            except TypeError as exc:
                outcome = error(exc)
            async def today():
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as ac:
                    return (await ac.get("/ping")).status_code
            emit(**outcome, today=asyncio.run(today()))
        '''),
        expect={"raised": "TypeError", "message": "AsyncClient.__init__() got an unexpected keyword argument 'app'",
                "today": 200},
        packages=("httpx",),
        sources=(("httpx/_client.py", 1372, "transport: AsyncBaseTransport | None = None,"),),
    ),
    OldForm(
        key="pytest-fixture-async",
        title="`@pytest.fixture` on an `async def` fixture (strict mode)",
        today_title="`@pytest_asyncio.fixture`",
        seen_in="the course brief (§4, `async_client` and `db_session` fixtures)",
        old=_code('''
            @pytest.fixture
            async def async_client():
                async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as ac:
                    yield ac

            @pytest.mark.asyncio
            async def test_create_user(async_client): ...
        '''),
        today=_code('''
            import pytest_asyncio

            @pytest_asyncio.fixture
            async def async_client():
                async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as ac:
                    yield ac
        '''),
        what_happens=("In strict mode (pytest-asyncio's default, and the course's setting) pytest-asyncio leaves "
                      "the fixture to pytest, and pytest errors at setup: `'test_create_user' requested an async "
                      "fixture 'async_client', with no plugin or hook that handled it. This is an error, as pytest "
                      "does not natively support it.` The test never runs."),
        where=("notebooks/04_async_testing.ipynb, sections \"The lifespan a test client skips\" "
               "and \"Old forms you will still meet\""),
        probe=_code('''
            OLD = """
            import pytest

            @pytest.fixture
            async def async_client():
                yield "client"

            @pytest.mark.asyncio
            async def test_create_user(async_client):
                assert async_client == "client"
            """
            TODAY = OLD.replace("import pytest", "import pytest, pytest_asyncio").replace(
                "@pytest.fixture", "@pytest_asyncio.fixture").replace("test_create_user", "test_today")
            run = run_pytest({"test_old.py": OLD, "test_today.py": TODAY})
            outcome, message = run["tests"]["test_create_user"]
            emit(outcome=outcome, message=message, today=run["tests"]["test_today"][0])
        '''),
        expect={"outcome": "error", "today": "passed",
                "message": "'test_create_user' requested an async fixture 'async_client', with no plugin or hook that handled it"},
        packages=("pytest", "pytest-asyncio"),
        sources=(("_pytest/fixtures.py", 1400, "requested an async fixture {request.fixturename!r}{auto_str}"),
                 ("pytest_asyncio/plugin.py", 129, 'default="strict",'),
                 ("pytest_asyncio/plugin.py", 932, "# Ignore async fixtures without explicit asyncio mark in strict mode")),
    ),
    OldForm(
        key="event-loop-fixture",
        title="the `event_loop` fixture (requested or overridden)",
        today_title="`loop_scope=` on the marker/fixture, or the `asyncio_default_*_loop_scope` options",
        seen_in="blog posts on pytest-asyncio < 1.0 (the \"session-scoped event loop\" recipe)",
        old=_code('''
            @pytest.fixture(scope="session")
            def event_loop():                      # "one loop for the whole session"
                loop = asyncio.new_event_loop()
                yield loop
                loop.close()

            def test_seed(event_loop):             # or a test that asks for it
                event_loop.run_until_complete(seed_database())
        '''),
        today=_code('''
            @pytest.mark.asyncio(loop_scope="session")
            async def test_one(): ...

            @pytest_asyncio.fixture(scope="session", loop_scope="session")
            async def engine(): ...

            # or for the whole suite, in pytest.ini / pyproject.toml:
            # asyncio_default_fixture_loop_scope = "session"
            # asyncio_default_test_loop_scope = "session"
        '''),
        what_happens=("pytest-asyncio 1.5 has no `event_loop` fixture. Asking for it without defining it: "
                      "`fixture 'event_loop' not found` (an error at setup). Defining your own session-scoped "
                      "`event_loop` is worse: no error and no warning, and pytest-asyncio ignores it; every test "
                      "still runs in a loop of its own."),
        where=("notebooks/04_async_testing.ipynb, sections \"Wrong event loop\" and "
               "\"Old forms you will still meet\""),
        probe=_code('''
            OVERRIDE = """
            import asyncio
            import pytest

            @pytest.fixture(scope="session")
            def event_loop():
                loop = asyncio.new_event_loop()
                yield loop
                loop.close()

            LOOPS = []

            @pytest.mark.asyncio
            async def test_first():
                LOOPS.append(asyncio.get_running_loop())

            @pytest.mark.asyncio
            async def test_second():
                LOOPS.append(asyncio.get_running_loop())
                assert LOOPS[0] is LOOPS[1], "each test got its own loop"
            """
            REQUEST = """
            import pytest

            @pytest.mark.asyncio
            async def test_requests_event_loop(event_loop):
                pass
            """
            TODAY = """
            import asyncio
            import pytest

            LOOPS = []

            @pytest.mark.asyncio(loop_scope="session")
            async def test_today_first():
                LOOPS.append(asyncio.get_running_loop())

            @pytest.mark.asyncio(loop_scope="session")
            async def test_today_second():
                LOOPS.append(asyncio.get_running_loop())
                assert LOOPS[0] is LOOPS[1]
            """
            run = run_pytest({"test_override.py": OVERRIDE, "test_request.py": REQUEST, "test_today.py": TODAY})
            tests = run["tests"]
            emit(outcome=tests["test_requests_event_loop"][0], message=tests["test_requests_event_loop"][1],
                 override_second_test=tests["test_second"][0],
                 override_says="each test got its own loop" in tests["test_second"][1],
                 warnings=run["warnings"], today=tests["test_today_second"][0])
        '''),
        expect={"outcome": "error", "message": "fixture 'event_loop' not found", "override_second_test": "failed",
                "override_says": True, "warnings": 0, "today": "passed"},
        packages=("pytest", "pytest-asyncio"),
        sources=(("pytest_asyncio/plugin.py", 1048, 'name=f"_{scope}_scoped_runner",'),),
    ),
    OldForm(
        key="on-event",
        title="`@app.on_event(\"startup\")`",
        today_title="a `lifespan` context manager",
        seen_in="older FastAPI tutorials (and FastAPI's own docs, as the \"alternative events\")",
        old=_code('''
            app = FastAPI()

            @app.on_event("startup")
            async def connect():
                app.state.engine = create_async_engine(DATABASE_URL)
        '''),
        today=_code('''
            @asynccontextmanager
            async def lifespan(app: FastAPI):
                app.state.engine = create_async_engine(DATABASE_URL)
                yield
                await app.state.engine.dispose()

            app = FastAPI(lifespan=lifespan)
        '''),
        what_happens=("Still works (FastAPI keeps a copy of the startup/shutdown machinery Starlette 1.x removed), "
                      "but each decorator warns `DeprecationWarning: on_event is deprecated, use lifespan event "
                      "handlers instead` (silent in an imported module). The trap: once the app has "
                      "`lifespan=...`, its `on_event` handlers are **not run**, and no error says so."),
        where="notebooks/01_database_lifecycle.ipynb, section \"Who closes the connections?\"",
        probe=_code('''
            import asyncio
            from contextlib import asynccontextmanager
            from fastapi import FastAPI
            OLD = """
            app = FastAPI()
            @app.on_event("startup")
            async def connect():
                app.state.ready = True
            """
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                plain = {"FastAPI": FastAPI}
                exec(OLD, plain)
            @asynccontextmanager
            async def lifespan(app):
                yield
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                mixed = {"FastAPI": lambda: FastAPI(lifespan=lifespan)}
                exec(OLD, mixed)
            @asynccontextmanager
            async def today_lifespan(app):
                app.state.ready = True
                yield
            today = FastAPI(lifespan=today_lifespan)
            async def started(app):
                async with app.router.lifespan_context(app):
                    return getattr(app.state, "ready", False)
            async def main():
                return [await started(app) for app in (plain["app"], mixed["app"], today)]
            runs, runs_with_lifespan, today_runs = asyncio.run(main())
            w = caught[0]
            emit(warning=w.category.__name__, message=" ".join(str(w.message).split()),
                 printed_by_default=[x.category.__name__ for x in printed_by_default(OLD, FastAPI=FastAPI)],
                 runs=runs, runs_with_lifespan=runs_with_lifespan, today=today_runs)
        '''),
        expect={"warning": "DeprecationWarning", "message": "on_event is deprecated, use lifespan event handlers instead.",
                "printed_by_default": [], "runs": True, "runs_with_lifespan": False, "today": True},
        packages=("fastapi", "starlette"),
        sources=(("fastapi/applications.py", 5014, "on_event is deprecated, use lifespan event handlers instead."),
                 ("fastapi/routing.py", 2705, "lifespan_context: Lifespan[Any] = _DefaultLifespan(self)")),
    ),
    OldForm(
        key="aioredis",
        title="`aioredis` / `asyncio-redis`",
        today_title="`redis.asyncio` (redis-py ≥ 4.2)",
        seen_in="the course brief (§6, the sync → async table) and older posts",
        old=_code('''
            import aioredis                       # or: import asyncio_redis

            redis = await aioredis.create_redis_pool("redis://localhost")
        '''),
        today=_code('''
            import redis.asyncio as redis         # pip install "redis>=4.2"

            client = redis.Redis(host="127.0.0.1", port=6379)   # one client, created in lifespan
            await client.ping()
            await client.aclose()                 # on shutdown (redis-py >= 5.0.1; before: close())
        '''),
        what_happens=("Neither package is in the pinned environment, so the import is `ModuleNotFoundError: No "
                      "module named 'aioredis'`. `aioredis` was merged into redis-py 4.2 (its repository is "
                      "archived); redis-py is pinned by the course (it comes with `celery[redis]`), and "
                      "`redis.asyncio.Redis` is its asyncio client."),
        where="notebooks/06_sync_to_async.ipynb, section \"4 · The other blocking calls and their replacements\"",
        probe=_code('''
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
        '''),
        expect={"raised": "ModuleNotFoundError", "message": "No module named 'aioredis'",
                "asyncio_redis": "ModuleNotFoundError", "redis_asyncio_client": "Redis", "has_aclose": True},
        packages=("redis",),
    ),
    OldForm(
        key="run-in-executor-bare",
        title="`await run_in_executor(None, fn, arg)`",
        today_title="`await asyncio.to_thread(fn, arg)`, or an async library",
        seen_in="the course brief (§6, the \"naive async wrapper\")",
        old=_code('''
            @app.get("/users/{user_id}")
            async def get_user_endpoint(user_id: int):
                return await run_in_executor(None, get_user_data, user_id)
        '''),
        today=_code('''
            @app.get("/users/{user_id}")
            async def get_user_endpoint(user_id: int):
                # a blocking library with no async version: run it in a worker thread
                return await asyncio.to_thread(get_user_data, user_id)
                # same thing: await asyncio.get_running_loop().run_in_executor(None, get_user_data, user_id)
        '''),
        what_happens=("`run_in_executor` is a method of the event loop, not a name you can call: every request "
                      "fails with `NameError: name 'run_in_executor' is not defined` (a 500 from a server). Once "
                      "written correctly it does not block the loop: it runs the function in the loop's default "
                      "thread pool (`min(32, cpu + 4)` threads), so the brief's \"still blocks\" is wrong, but the "
                      "pool bounds concurrency."),
        where="notebooks/06_sync_to_async.ipynb, section \"3 · Thread pools: no blocking, but a cap\"",
        probe=_code('''
            import asyncio, httpx
            from fastapi import FastAPI
            def get_user_data(user_id):
                return {"user": user_id}
            app = FastAPI()
            @app.get("/users/{user_id}")
            async def get_user_endpoint(user_id: int):
                return await run_in_executor(None, get_user_data, user_id)
            @app.get("/today/{user_id}")
            async def today_endpoint(user_id: int):
                return await asyncio.to_thread(get_user_data, user_id)
            async def main():
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    try:
                        await client.get("/users/1")
                        outcome = {"raised": None}
                    except Exception as exc:
                        outcome = error(exc)
                    outcome["today"] = (await client.get("/today/1")).json()
                quiet = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=quiet, base_url="http://test") as client:
                    outcome["status"] = (await client.get("/users/1")).status_code
                return outcome
            async def loop_runs_meanwhile(bridge):
                """True if the loop runs other code while the blocking function waits in its thread:
                the function waits for an event that only a coroutine on the loop sets."""
                import threading
                released = threading.Event()
                call = asyncio.ensure_future(bridge(lambda: released.wait(5)))
                await asyncio.sleep(0.01)
                released.set()
                return await call
            async def bridges():
                loop = asyncio.get_running_loop()
                return [await loop_runs_meanwhile(lambda fn: asyncio.to_thread(fn)),
                        await loop_runs_meanwhile(lambda fn: loop.run_in_executor(None, fn))]
            emit(**asyncio.run(main()), loop_not_blocked=asyncio.run(bridges()))
        '''),
        expect={"raised": "NameError", "message": "name 'run_in_executor' is not defined", "status": 500,
                "today": {"user": 1}, "loop_not_blocked": [True, True]},
        packages=("fastapi",),
        sources=(("stdlib:asyncio/threads.py", None, "return await loop.run_in_executor(None, func_call)"),
                 ("stdlib:asyncio/base_events.py", None, "executor = concurrent.futures.ThreadPoolExecutor("),
                 ("stdlib:concurrent/futures/thread.py", None, "max_workers = min(32, (os.cpu_count() or 1) + 4)")),
    ),
    OldForm(
        key="get-event-loop",
        title="`asyncio.get_event_loop().run_in_executor(...)`",
        today_title="`asyncio.get_running_loop()` (inside a coroutine), or `asyncio.to_thread`",
        seen_in="blog posts and answers that fix the line above",
        old=_code('''
            loop = asyncio.get_event_loop()
            result = await loop.run_in_executor(None, get_user_data, user_id)
        '''),
        today=_code('''
            loop = asyncio.get_running_loop()     # raises if no loop is running: a bug shows at once
            result = await loop.run_in_executor(None, get_user_data, user_id)
        '''),
        what_happens=("Inside a coroutine (an `async def` endpoint) it works on Python 3.11 and warns nothing: it "
                      "returns the running loop. Outside one it does not fail the same way everywhere: in a worker "
                      "thread (a plain `def` endpoint, a thread pool) it raises `RuntimeError: There is no current "
                      "event loop in thread ...`; in the main thread before any loop it silently creates a new, "
                      "never-running loop. `get_running_loop()` always means the loop you are in."),
        where="notebooks/06_sync_to_async.ipynb, section \"3 · Thread pools: no blocking, but a cap\"",
        probe=_code('''
            import asyncio, threading
            import httpx
            from fastapi import FastAPI
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                created = asyncio.get_event_loop()        # main thread, no loop yet
            main_thread = {"new_loop_running": created.is_running(), "warnings": len(caught)}
            created.close()
            asyncio.set_event_loop(None)
            app = FastAPI()
            @app.get("/sync")
            def sync_endpoint():                          # runs in a worker thread
                asyncio.get_event_loop()
                return {}
            async def call_sync_endpoint():
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
                    try:
                        await c.get("/sync")
                    except RuntimeError as exc:
                        return str(exc)
            def_endpoint = asyncio.run(call_sync_endpoint())
            async def in_coroutine():
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    loop = asyncio.get_event_loop()
                    result = await loop.run_in_executor(None, sum, [1, 2])
                return loop is asyncio.get_running_loop(), result, len(caught)
            same_loop, result, warned = asyncio.run(in_coroutine())
            seen = {}
            def in_thread():
                try:
                    asyncio.get_event_loop()
                    seen["thread"] = None
                except RuntimeError as exc:
                    seen["thread"] = str(exc)
                try:
                    asyncio.get_running_loop()
                except RuntimeError as exc:
                    seen["today"] = str(exc)
            worker = threading.Thread(target=in_thread, name="worker")
            worker.start()
            worker.join()
            emit(in_coroutine_is_running_loop=same_loop, result=result, warnings=warned, main_thread=main_thread,
                 def_endpoint_message=def_endpoint,
                 raised="RuntimeError" if seen["thread"] else None, message=seen["thread"], today=seen["today"])
        '''),
        expect={"in_coroutine_is_running_loop": True, "result": 3, "warnings": 0, "raised": "RuntimeError",
                # Python 3.12 added a DeprecationWarning for get_event_loop() with no current loop.
                "main_thread": {"new_loop_running": False, "warnings": 0 if sys.version_info < (3, 12) else 1},
                "def_endpoint_message": "There is no current event loop in thread 'AnyIO worker thread'",
                "message": "There is no current event loop in thread 'worker'", "today": "no running event loop"},
        packages=("fastapi", "anyio"),
        sources=(("stdlib:asyncio/events.py", None, "raise RuntimeError('There is no current event loop in thread %r.'"),),
    ),
    OldForm(
        key="create-subprocess",
        title="`asyncio.create_subprocess`",
        today_title="`asyncio.create_subprocess_exec` (or `_shell`)",
        seen_in="the course brief (§6, the sync → async table)",
        old=_code('''
            proc = await asyncio.create_subprocess("convert", "in.png", "out.jpg")
        '''),
        today=_code('''
            proc = await asyncio.create_subprocess_exec(
                "convert", "in.png", "out.jpg", stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
        '''),
        what_happens=("`AttributeError: module 'asyncio' has no attribute 'create_subprocess'`. The functions are "
                      "`create_subprocess_exec` (argument list, no shell) and `create_subprocess_shell`."),
        where="notebooks/06_sync_to_async.ipynb, section \"4 · The other blocking calls and their replacements\"",
        probe=_code('''
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
        '''),
        expect={"raised": "AttributeError", "message": "module 'asyncio' has no attribute 'create_subprocess'",
                "today": "42"},
    ),
    OldForm(
        key="read-csv-upload",
        title="`pd.read_csv(file.file)` as \"streaming\" an upload",
        today_title="`request.stream()` with a size limit (or rows from the spooled file)",
        seen_in="the course brief (§7: \"Stream the file - don't load entirely into memory\")",
        old=_code('''
            @app.post("/upload-csv")
            async def upload_csv(file: UploadFile):
                # Stream the file - don't load entirely into memory
                df = pd.read_csv(file.file)
        '''),
        today=_code('''
            MAX_BYTES = 50 * 1024 * 1024

            @app.post("/upload-csv")
            async def upload_csv(request: Request):
                received = 0
                async for chunk in request.stream():      # bytes as they arrive
                    received += len(chunk)
                    if received > MAX_BYTES:
                        raise HTTPException(status_code=413, detail="upload too large")
                    ...                                   # parse incrementally
                return {"bytes": received}
        '''),
        what_happens=("Nothing streams. Before the endpoint runs, FastAPI reads the whole multipart body and "
                      "Starlette writes the file into a `SpooledTemporaryFile` (kept in memory up to 1 MB, then "
                      "on disk): in a real upload of 5 MiB the endpoint starts only after the last byte arrived, "
                      "with `file.size` already 5 MiB and the file rolled to disk. `pd.read_csv` then builds the "
                      "whole DataFrame in memory and, as a plain call inside `async def`, blocks the event loop "
                      "while it parses: `pd.read_csv` returns only when every row is a DataFrame in memory (module 07 "
                      "measures what that costs)."),
        where=('notebooks/07_file_uploads.ipynb, sections "1 · What the endpoint receives", '
               '"2 · Read it all, or row by row: peak memory" and "4 · Limits and bad input: 413, 415, 422, all or nothing"'),
        probe=_code('''
            import socket, threading, time
            import httpx, uvicorn
            from fastapi import FastAPI, HTTPException, Request, UploadFile
            app = FastAPI()
            seen, sent = {}, {}
            first_chunk = threading.Event()
            @app.post("/upload-csv")
            async def upload_csv(file: UploadFile):
                seen["endpoint_started"] = time.monotonic()
                seen["size"] = file.size
                seen["rolled_to_disk"] = file.file._rolled      # SpooledTemporaryFile's own flag
                seen["type"] = type(file.file).__name__
                return {}
            @app.post("/stream")
            async def stream(request: Request):
                async for chunk in request.stream():
                    first_chunk.set()
                return {}
            MAX_BYTES = 1024 * 1024
            @app.post("/limited")                           # today's form, with a 1 MiB limit
            async def limited(request: Request):
                received = 0
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > MAX_BYTES:
                        raise HTTPException(status_code=413, detail="upload too large")
                return {"bytes": received}
            CHUNK, CHUNKS, BOUNDARY = 1024 * 1024, 5, "oldformsboundary"
            def multipart():
                yield (f'--{BOUNDARY}\\r\\nContent-Disposition: form-data; name="file"; filename="big.csv"\\r\\n'
                       "Content-Type: text/csv\\r\\n\\r\\n").encode()
                for _ in range(CHUNKS):
                    time.sleep(0.02)
                    yield b"x" * CHUNK
                sent["last_chunk"] = time.monotonic()       # the closing boundary goes after this
                yield f"\\r\\n--{BOUNDARY}--\\r\\n".encode()
            def raw():
                yield b"x" * CHUNK
                sent["stream_seen_early"] = first_chunk.wait(5)  # the endpoint has bytes before the rest is sent
                for _ in range(CHUNKS - 1):
                    yield b"x" * CHUNK
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 10
                while not server.started and time.monotonic() < deadline:
                    time.sleep(0.01)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                    upload = client.post("/upload-csv", content=multipart(),
                                         headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
                    streamed = client.post("/stream", content=raw())
                    today_limit = [client.post("/limited", content=b"x" * CHUNK * CHUNKS).status_code,
                                   client.post("/limited", content=b"x" * 1000).status_code]
            finally:
                server.should_exit = True
                thread.join(5)
            import io
            import pandas as pd
            whole = pd.read_csv(io.BytesIO(b"id,amount\\n" + b"".join(b"%d,1\\n" % i for i in range(1000))))
            emit(status=[upload.status_code, streamed.status_code], size=seen["size"], type=seen["type"],
                 rolled_to_disk=seen["rolled_to_disk"],
                 endpoint_started_after_last_byte=seen["endpoint_started"] > sent["last_chunk"],
                 today_sees_bytes_while_uploading=sent["stream_seen_early"], today_limit=today_limit,
                 read_csv_returns=[type(whole).__name__, len(whole)])
        '''),
        expect={"status": [200, 200], "size": 5 * 1024 * 1024, "type": "SpooledTemporaryFile", "rolled_to_disk": True,
                "endpoint_started_after_last_byte": True, "today_sees_bytes_while_uploading": True,
                "today_limit": [413, 200], "read_csv_returns": ["DataFrame", 1000]},
        packages=("fastapi", "starlette", "python-multipart", "uvicorn", "pandas"),
        sources=(("fastapi/routing.py", 468, "body = await request.form(**limits)"),
                 ("starlette/formparsers.py", 135, "spool_max_size = 1024 * 1024  # 1MB"),
                 ("starlette/formparsers.py", 218, "tempfile = SpooledTemporaryFile(max_size=self.spool_max_size)")),
    ),
    OldForm(
        key="status-413-422-names",
        title="`status.HTTP_413_REQUEST_ENTITY_TOO_LARGE`, `status.HTTP_422_UNPROCESSABLE_ENTITY`",
        today_title="`status.HTTP_413_CONTENT_TOO_LARGE`, `status.HTTP_422_UNPROCESSABLE_CONTENT`",
        seen_in="FastAPI and Starlette answers written before RFC 9110 renamed the two codes",
        old=_code("""
            from fastapi import HTTPException, status

            raise HTTPException(status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="upload too large")
        """),
        today=_code("""
            from fastapi import HTTPException, status

            raise HTTPException(status_code=status.HTTP_413_CONTENT_TOO_LARGE, detail="upload too large")
        """),
        what_happens=("Still 413 and 422, with a warning on every attribute access: ``StarletteDeprecationWarning: "
                      "'HTTP_413_REQUEST_ENTITY_TOO_LARGE' is deprecated. Use 'HTTP_413_CONTENT_TOO_LARGE' "
                      "instead.`` `fastapi.status` is Starlette's module, and its warning is a `UserWarning`, so "
                      "Python prints it even from inside your app."),
        where='notebooks/07_file_uploads.ipynb, section "4 · Limits and bad input: 413, 415, 422, all or nothing"',
        probe=_code("""
            from fastapi import status
            from starlette.exceptions import StarletteDeprecationWarning
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                old = [status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, status.HTTP_422_UNPROCESSABLE_ENTITY]
            emit(old=old, today=[status.HTTP_413_CONTENT_TOO_LARGE, status.HTTP_422_UNPROCESSABLE_CONTENT],
                 warnings=[w.category.__name__ for w in caught], messages=[str(w.message) for w in caught],
                 user_warning=issubclass(StarletteDeprecationWarning, UserWarning))
        """),
        expect={"old": [413, 422], "today": [413, 422],
                "warnings": ["StarletteDeprecationWarning", "StarletteDeprecationWarning"],
                "messages": ["'HTTP_413_REQUEST_ENTITY_TOO_LARGE' is deprecated. Use 'HTTP_413_CONTENT_TOO_LARGE' instead.",
                             "'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated. Use 'HTTP_422_UNPROCESSABLE_CONTENT' instead."],
                "user_warning": True},
        packages=("fastapi", "starlette"),
        sources=(("starlette/status.py", 192, '"HTTP_413_REQUEST_ENTITY_TOO_LARGE": "HTTP_413_CONTENT_TOO_LARGE",'),
                 ("starlette/exceptions.py", 36, "class StarletteDeprecationWarning(UserWarning):")),
    ),
    OldForm(
        key="testclient-without-with",
        title="`client = TestClient(app)` without `with`",
        today_title="`with TestClient(app) as client:` (or `LifespanManager` + `ASGITransport`)",
        seen_in="the course brief (§2, \"testing with mocks\") and FastAPI testing posts",
        old=_code('''
            client = TestClient(app)

            def test_pool():
                response = client.get("/pool")        # needs what the lifespan creates
        '''),
        today=_code('''
            def test_pool():
                with TestClient(app) as client:       # runs the lifespan: startup ... shutdown
                    response = client.get("/pool")
        '''),
        what_happens=("`TestClient` only runs the app's lifespan inside `with`. Without it nothing the lifespan "
                      "sets exists: the endpoint fails with `AttributeError: 'State' object has no attribute "
                      "'pool'`, re-raised into the test (with `raise_server_exceptions=False`, as a server would: 500)."),
        where="notebooks/04_async_testing.ipynb, section \"The lifespan a test client skips\"",
        probe=_code('''
            from contextlib import asynccontextmanager
            from starlette.exceptions import StarletteDeprecationWarning
            warnings.simplefilter("ignore", StarletteDeprecationWarning)  # its own entry: testclient-httpx
            from fastapi import FastAPI, Request
            from fastapi.testclient import TestClient
            started = []
            @asynccontextmanager
            async def lifespan(app):
                started.append(True)
                app.state.pool = "pool"
                yield
                del app.state.pool
            app = FastAPI(lifespan=lifespan)
            @app.get("/pool")
            async def pool(request: Request):
                return {"pool": request.app.state.pool}
            client = TestClient(app)
            try:
                client.get("/pool")
                outcome = {"raised": None}
            except AttributeError as exc:
                outcome = error(exc)
            outcome["lifespan_ran"] = bool(started)
            outcome["server_would_answer"] = TestClient(app, raise_server_exceptions=False).get("/pool").status_code
            with TestClient(app) as client:
                outcome["today"] = client.get("/pool").status_code
            emit(**outcome)
        '''),
        expect={"raised": "AttributeError", "message": "'State' object has no attribute 'pool'",
                "lifespan_ran": False, "server_would_answer": 500, "today": 200},
        packages=("fastapi", "starlette"),
        sources=(("starlette/testclient.py", 571, "self.task = portal.start_task_soon(self.lifespan)"),),
    ),
    OldForm(
        key="testclient-httpx",
        title="`from fastapi.testclient import TestClient` with httpx",
        today_title="`httpx.AsyncClient` + `ASGITransport` (+ `LifespanManager`)",
        seen_in="the course brief (§2) and FastAPI's own testing tutorial",
        old=_code('''
            from fastapi.testclient import TestClient

            client = TestClient(app)
        '''),
        today=_code('''
            from asgi_lifespan import LifespanManager
            from httpx import ASGITransport, AsyncClient

            async with LifespanManager(app) as manager:
                async with AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client:
                    response = await client.get("/pool")
        '''),
        what_happens=("Still works, but Starlette 1.10 warns on import: ``StarletteDeprecationWarning: Using `httpx` "
                      "with `starlette.testclient` is deprecated; install `httpx2` instead.`` It is a `UserWarning`, "
                      "so Python prints it by default. The course keeps httpx 0.28 and tests async apps with "
                      "`AsyncClient` + `ASGITransport`, which run the app in the test's own event loop (`TestClient` "
                      "runs it in a separate thread with a loop of its own)."),
        where="notebooks/04_async_testing.ipynb, section \"The lifespan a test client skips\"",
        probe=_code('''
            import asyncio
            from contextlib import asynccontextmanager
            printed = printed_by_default("from fastapi.testclient import TestClient")  # the first import warns
            w = printed[0]
            from fastapi import FastAPI, Request
            from fastapi.testclient import TestClient
            import httpx
            from asgi_lifespan import LifespanManager
            @asynccontextmanager
            async def lifespan(app):
                app.state.pool = "pool"
                yield
            app = FastAPI(lifespan=lifespan)
            @app.get("/pool")
            async def pool(request: Request):
                return {"pool": request.app.state.pool}
            with TestClient(app) as client:
                works = client.get("/pool").status_code
            async def today():
                async with LifespanManager(app) as manager:
                    transport = httpx.ASGITransport(app=manager.app)
                    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                        return (await client.get("/pool")).status_code
            emit(warning=w.category.__name__, message=str(w.message), user_warning=issubclass(w.category, UserWarning),
                 printed_by_default=[x.category.__name__ for x in printed], still_works=works, today=asyncio.run(today()))
        '''),
        expect={"warning": "StarletteDeprecationWarning",
                "message": "Using `httpx` with `starlette.testclient` is deprecated; install `httpx2` instead.",
                "user_warning": True, "printed_by_default": ["StarletteDeprecationWarning"], "still_works": 200,
                "today": 200},
        packages=("starlette", "httpx", "asgi-lifespan"),
        sources=(("starlette/testclient.py", 41, '"Using `httpx` with `starlette.testclient` is deprecated; install `httpx2` instead.",'),
                 ("starlette/testclient.py", 559, "anyio.from_thread.start_blocking_portal(**self.async_backend)"),
                 ("starlette/exceptions.py", 36, "class StarletteDeprecationWarning(UserWarning):")),
    ),
    OldForm(
        key="pydantic-basesettings",
        title="`from pydantic import BaseSettings`",
        today_title="`from pydantic_settings import BaseSettings`",
        seen_in="settings examples written for Pydantic v1 (the brief's `Settings()` in §2)",
        old=_code('''
            from pydantic import BaseSettings

            class Settings(BaseSettings):
                redis_host: str = "localhost"
        '''),
        today=_code('''
            from pydantic_settings import BaseSettings, SettingsConfigDict   # pip install pydantic-settings

            class Settings(BaseSettings):
                model_config = SettingsConfigDict(env_file=".env")
                redis_host: str = "localhost"
        '''),
        what_happens=("``pydantic.errors.PydanticImportError: `BaseSettings` has been moved to the "
                      "`pydantic-settings` package.`` (a subclass of `ImportError`), with a link to the migration "
                      "guide."),
        where="notebooks/02_dependency_injection.ipynb, section \"Settings: parsed on every request, or once\"",
        probe=_code('''
            try:
                from pydantic import BaseSettings
                outcome = {"raised": None}
            except ImportError as exc:
                outcome = error(exc)
                outcome["import_error"] = isinstance(exc, ImportError)
            os.environ["REDIS_HOST"] = "cache.internal"
            from pydantic_settings import BaseSettings
            class Settings(BaseSettings):
                redis_host: str = "localhost"
            emit(**outcome, today=Settings().redis_host)
        '''),
        expect={"raised": "PydanticImportError", "import_error": True,
                "message": "`BaseSettings` has been moved to the `pydantic-settings` package.",
                "today": "cache.internal"},
        packages=("pydantic", "pydantic-settings"),
        sources=(("pydantic/_migration.py", 304, "if import_path == 'pydantic:BaseSettings':"),
                 ("pydantic/errors.py", 130, "class PydanticImportError(PydanticErrorMixin, ImportError):")),
    ),
    OldForm(
        key="sqlalchemy-no-asyncio-extra",
        title="`pip install sqlalchemy` for async",
        today_title="`pip install \"sqlalchemy[asyncio]\"`",
        seen_in="older SQLAlchemy async posts (`pip install sqlalchemy`, no extra)",
        old=_code('''
            pip install sqlalchemy aiosqlite
        '''),
        today=_code('''
            pip install "sqlalchemy[asyncio]" aiosqlite
        '''),
        what_happens=("SQLAlchemy 2.1 lists `greenlet` only under the `asyncio` extra, so a plain install has no "
                      "greenlet and `from sqlalchemy.ext.asyncio import create_async_engine` fails: `ImportError: "
                      "The SQLAlchemy asyncio module requires that the Python 'greenlet' library is installed.` "
                      "(The probe hides greenlet from the import system to show it; the course pins "
                      "`sqlalchemy[asyncio]`.)"),
        where="requirements.txt (`sqlalchemy[asyncio]`); not a notebook topic",
        probe=_code('''
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
        '''),
        expect={"raised": "ImportError", "greenlet_in_plain_install": False, "greenlet_in_asyncio_extra": True,
                "message": "The SQLAlchemy asyncio module requires that the Python 'greenlet' library is installed."},
        packages=("sqlalchemy",),
        sources=(("sqlalchemy/util/concurrency.py", 83, "raise ImportError(_ERROR_MESSAGE) from e"),),
    ),
    OldForm(
        key="celery-uppercase-settings",
        title="`CELERY_ACKS_LATE = True` (upper-case setting names)",
        today_title="`task_acks_late=True` in `app.conf.update(...)`",
        seen_in="Celery 3 tutorials and Django settings modules (`CELERY_...`, `CELERYD_...`)",
        old=_code('''
            class CeleryConfig:
                CELERY_ACKS_LATE = True
                CELERYD_PREFETCH_MULTIPLIER = 1
                task_track_started = True      # a newer name added later

            app.config_from_object(CeleryConfig)
        '''),
        today=_code('''
            app.conf.update(
                task_acks_late=True,
                task_reject_on_worker_lost=True,
                worker_prefetch_multiplier=1,
                task_track_started=True,
            )
        '''),
        what_happens=("Old names alone still work in Celery 5.7 (they are mapped to the new ones). Mixed with new "
                      "names in the same configuration, the first read of any setting raises `ImproperlyConfigured: "
                      "Cannot mix new and old setting keys, please rename the following settings to the new format: "
                      "CELERY_ACKS_LATE -> task_acks_late` (or, when old names are the majority, the same advice "
                      "the other way round)."),
        where="notebooks/08_background_work.ipynb, section \"7 · Old forms you will meet online\"",
        probe=_code('''
            from celery import Celery
            from celery.exceptions import ImproperlyConfigured
            class OldOnly:
                CELERY_ACKS_LATE = True
                CELERYD_PREFETCH_MULTIPLIER = 1
            class Mixed:  # half migrated: one old name, one new
                CELERY_ACKS_LATE = True
                task_track_started = True
            old = Celery("old", broker="memory://", set_as_current=False)
            old.config_from_object(OldOnly)
            mixed = Celery("mixed", broker="memory://", set_as_current=False)
            mixed.config_from_object(Mixed)
            try:
                mixed.conf.task_acks_late
            except ImproperlyConfigured as exc:
                outcome = error(exc)
            else:
                outcome = {"raised": None}
            today = Celery("today", broker="memory://", set_as_current=False)
            today.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)
            emit(old_only=[old.conf.task_acks_late, old.conf.worker_prefetch_multiplier], **outcome,
                 today=[today.conf.task_acks_late, today.conf.worker_prefetch_multiplier])
        '''),
        expect={"old_only": [True, 1], "raised": "ImproperlyConfigured",
                "message": "Cannot mix new and old setting keys", "today": [True, 1]},
        packages=("celery",),
        sources=(("celery/app/utils.py", 42, "Cannot mix new and old setting keys, please rename the"),),
    ),
    OldForm(
        key="celery-worker-dash-a",
        title="`celery worker -A tasks`",
        today_title="`celery -A tasks worker`",
        seen_in="Celery 3 and 4 tutorials, old Dockerfiles and Procfiles",
        old=_code('''
            celery worker -A tasks --loglevel=info
        '''),
        today=_code('''
            celery -A tasks worker --loglevel=info
        '''),
        what_happens=("The command exits with code 2: `Error: No such option '-A'.`, after Celery's own "
                      "explanation: \"You are using `-A` as an option of the worker sub-command ... The support for "
                      "this usage was removed in Celery 5.0. Instead you should use `-A` as a global option\"."),
        where="notebooks/08_background_work.ipynb, section \"7 · Old forms you will meet online\"",
        probe=_code('''
            done = subprocess.run([sys.executable, "-m", "celery", "worker", "-A", "tasks"],
                                  capture_output=True, text=True, timeout=30)
            emit(returncode=done.returncode, message=" ".join(done.stderr.split()),
                 celery_message=" ".join(done.stderr.split()))
        '''),
        expect={"returncode": 2, "message": "Error: No such option '-A'.",
                "celery_message": "The support for this usage was removed in Celery 5.0."},
        packages=("celery", "click"),
        sources=(("celery/bin/celery.py", 207, "The support for this usage was removed in Celery 5.0. Instead you should use `{option_name}` as a global option:"),),
    ),
    OldForm(
        key="celery-task-module",
        title="`from celery.task import task`",
        today_title="`@app.task` (or `@shared_task` in a reusable library)",
        seen_in="Celery 3 tutorials (`celery.task`, `celery.decorators`)",
        old=_code('''
            from celery.task import task

            @task
            def send_invoice(order_id): ...
        '''),
        today=_code('''
            from celery import Celery

            app = Celery("tasks", broker=BROKER_URL)

            @app.task
            def send_invoice(order_id): ...
        '''),
        what_happens="`ModuleNotFoundError: No module named 'celery.task'`: the module was removed in Celery 5.0.",
        where="notebooks/08_background_work.ipynb, section \"7 · Old forms you will meet online\"",
        probe=_code('''
            try:
                from celery.task import task
            except ImportError as exc:
                outcome = error(exc)
            else:
                outcome = {"raised": None}
            from celery import Celery, shared_task
            app = Celery("tasks", broker="memory://", set_as_current=False)
            @app.task(name="send_invoice")
            def send_invoice(order_id):
                return order_id
            emit(**outcome, today=send_invoice.name, shared=callable(shared_task))
        '''),
        expect={"raised": "ModuleNotFoundError", "message": "No module named 'celery.task'",
                "today": "send_invoice", "shared": True},
        packages=("celery",),
    ),
]


# ---------------------------------------------------------------- running the probes


def probe_source(form: OldForm) -> str:
    """The program a probe runs: the shared helpers, then the probe itself."""
    return PRELUDE + "\n\n\n# ---- probe: " + form.key + "\n" + form.probe + "\n"


def probe_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in DROP_FROM_ENV}


def run_probe(form: OldForm, timeout: float = PROBE_TIMEOUT, python: str | None = None) -> dict[str, Any]:
    """Run a probe in a subprocess (in a fresh temporary folder) and return its JSON outcome.

    A probe that crashes, prints no JSON or overruns ``timeout`` returns ``{"probe_failed": ...}``
    with the end of its stderr, so the test names the problem instead of a JSON error.
    """
    with tempfile.TemporaryDirectory(prefix="oldforms-") as folder:
        try:
            done = subprocess.run([python or sys.executable, "-I", "-c", probe_source(form)], cwd=folder,
                                  env=probe_env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"probe_failed": f"no answer within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        outcome = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"probe_failed": f"exit code {done.returncode}, no JSON line", "stderr": done.stderr[-2000:]}
    if done.returncode != 0:
        outcome["probe_failed"] = f"exit code {done.returncode}"
        outcome["stderr"] = done.stderr[-2000:]
    return outcome


def check(expect: dict[str, Any], outcome: dict[str, Any]) -> list[str]:
    """What in ``outcome`` disagrees with ``expect``.

    A key named ``message`` (or ending in ``_message``) holds a substring the outcome's text must
    contain; every other key must be equal.
    """
    problems = []
    if "probe_failed" in outcome:
        problems.append(f"the probe failed: {outcome['probe_failed']}\n{outcome.get('stderr', '')}")
    for key, want in expect.items():
        if key not in outcome:
            problems.append(f"{key}: missing from the probe's outcome {outcome}")
        elif (key == "message" or key.endswith("_message")) and isinstance(want, str):
            if not isinstance(outcome[key], str) or want not in outcome[key]:
                problems.append(f"{key}: expected to contain {want!r}, got {outcome[key]!r}")
        elif outcome[key] != want:
            problems.append(f"{key}: expected {want!r}, got {outcome[key]!r}")
    return problems


def _source_path(path: str) -> Path:
    if path.startswith("stdlib:"):
        return Path(sysconfig.get_paths()["stdlib"]) / path.removeprefix("stdlib:")
    return Path(sysconfig.get_paths()["purelib"]) / path


def source_problems(form: OldForm) -> list[str]:
    """Citations of library source whose line no longer holds the quoted text."""
    problems = []
    for path, line, text in form.sources:
        file = _source_path(path)
        if path.startswith("stdlib:") and sys.version_info[:2] != CITED_PYTHON:
            continue  # the standard library's lines were cited from Python 3.11's
        if not file.exists():
            problems.append(f"{path}: not found at {file}")
            continue
        lines = file.read_text().splitlines()
        if line is None:
            if not any(text in candidate for candidate in lines):
                problems.append(f"{path}: no line contains {text!r}")
        elif not (0 < line <= len(lines) and text in lines[line - 1]):
            got = lines[line - 1].strip() if 0 < line <= len(lines) else "(past the end)"
            problems.append(f"{path}:{line}: expected {text!r}, found {got!r}")
    return problems


# ---------------------------------------------------------------- the page


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


CITED_PYTHON = (3, 11)  # the Python the page is made with and its stdlib lines are cited from (CI's)


def _python() -> str:
    return "Python " + ".".join(map(str, CITED_PYTHON))


def _checked_with(form: OldForm) -> str:
    names = [f"{dist} {_version(dist)}" for dist in form.packages]
    return ", ".join([_python(), *names])


def _cite(path: str, line: int | None) -> str:
    shown = path.removeprefix("stdlib:")
    return f"`{shown}:{line}`" if line else f"`{shown}`"


def render() -> str:
    """The Markdown page, built from FORMS and the versions installed in this environment."""
    packages = sorted({dist for form in FORMS for dist in form.packages})
    out = [
        "# Old forms and today's forms",
        "",
        "<!-- Generated from course/oldforms.py: edit the data there, then run",
        f"     {REGENERATE}",
        "     tests/test_old_forms.py fails when this file and the data disagree. -->",
        "",
        "Blog posts, answers and the brief this course grew from show forms that no longer work, or that",
        "work differently from what they promise. Each one below is **run** against the course's pinned",
        "versions by `tests/test_old_forms.py`, which asserts what happens (the exception and its message,",
        "the warning, or the behaviour), so if an upgrade changes the outcome the test fails and this page",
        "is corrected. See the list in a terminal with `python -m course.oldforms`, and what each probe",
        "sees now with `python -m course.oldforms --check [KEY ...]` (the keys are the anchors below).",
        "",
        "Checked with " + _python() + " and " + ", ".join(f"{d} {_version(d)}" for d in packages) + ".",
        "",
        "| # | Old form | Today | Taught in |",
        "|---|---|---|---|",
    ]
    for n, form in enumerate(FORMS, 1):
        cells = [f"[{form.title}](#{form.key})", form.today_title, form.where]
        out.append(f"| {n} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    for n, form in enumerate(FORMS, 1):
        out += [
            "",
            f'<a id="{form.key}"></a>',
            "",
            f"## {n}. {form.title}",
            "",
            f"Met in {form.seen_in}.",
            "",
            "```" + ("bash" if is_shell(form.old) else "python"),
            form.old,
            "```",
            "",
            f"**What happens** ({_checked_with(form)}): {form.what_happens}",
            "",
            "**Today:**",
            "",
            "```" + ("bash" if is_shell(form.today) else "python"),
            form.today,
            "```",
            "",
            f"**Taught in:** {form.where}.",
        ]
        if form.sources:
            out += ["", "**Source:** " + ", ".join(_cite(path, line) for path, line, _ in form.sources) + "."]
    out.append("")
    return "\n".join(out)


def _check_all(keys: list[str]) -> int:
    forms = [f for f in FORMS if not keys or f.key in keys]
    unknown = set(keys) - {f.key for f in forms}
    if unknown:
        print(f"unknown key(s): {', '.join(sorted(unknown))}; known: {', '.join(f.key for f in FORMS)}")
        return 2
    failed = 0
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        for form, outcome in zip(forms, pool.map(run_probe, forms)):
            problems = check(form.expect, outcome) + source_problems(form)
            failed += bool(problems)
            print(f"{'ok  ' if not problems else 'FAIL'} {form.key}: {json.dumps(outcome)}")
            for problem in problems:
                print(f"       {problem}")
    print(f"\n{len(forms) - failed} of {len(forms)} old forms behave as the page says.")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Print the page (``course old-forms``); ``--check [KEY ...]`` runs the probes instead.

    ``argv=None`` means no options (not ``sys.argv``), so a caller such as the course CLI can call
    ``main()`` whatever its own command line was."""
    parser = argparse.ArgumentParser(prog="course old-forms",
                                     description="Old forms met online, what they do with the pinned versions, and today's form.")
    parser.add_argument("--check", nargs="*", metavar="KEY",
                        help="run the probes (all, or the keys given) and show what each old form does now")
    args = parser.parse_args([] if argv is None else argv)
    if args.check is not None:
        return _check_all(args.check)
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
