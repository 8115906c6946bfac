"""The environment is pinned, and conda and pip describe the same one."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pip_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {line!r} is not pinned with =="
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def conda_env() -> tuple[dict[str, str], dict[str, str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("-"):
                    continue
                req = Requirement(line)
                (spec,) = req.specifier
                assert spec.operator == "==", f"environment.yml pip entry {line!r} is not pinned with =="
                pip[canonicalize_name(req.name)] = spec.version
        else:
            name, _, version = dep.partition("=")
            conda[canonicalize_name(name)] = version.lstrip("=")
    return conda, pip


def test_environment_yml_matches_pip_pins() -> None:
    conda, pip = conda_env()
    pins = pip_pins(ROOT / "requirements.txt")
    assert pip == pins, f"environment.yml and requirements.txt differ: {set(pip.items()) ^ set(pins.items())}"
    # conda's `python=3.11` is a prefix match; it must agree with pyproject and the Makefile.
    assert conda.get("python") == "3.11"
    assert 'requires-python = ">=3.11,<3.12"' in (ROOT / "pyproject.toml").read_text()
    assert "PYTHON ?= python3.11" in (ROOT / "Makefile").read_text()


def test_lock_agrees_with_pins() -> None:
    pins = pip_pins(ROOT / "requirements.txt")
    lock = pip_pins(ROOT / "requirements-lock.txt")
    disagree = {name: (v, lock.get(name)) for name, v in pins.items() if lock.get(name) != v}
    assert not disagree, f"requirements-lock.txt disagrees with requirements.txt: {disagree}"


def test_installed_matches_lock() -> None:
    """The running environment is the pinned one (a stale .venv would make results drift)."""
    lock = pip_pins(ROOT / "requirements-lock.txt")
    wrong = {}
    for name, version in lock.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from requirements-lock.txt (pinned, installed): {wrong}"
    assert sys.version_info[:2] == (3, 11)


def test_greenlet_is_installed() -> None:
    """SQLAlchemy 2.1 no longer pulls greenlet in: sqlalchemy[asyncio] must bring it."""
    import asyncio

    import greenlet  # noqa: F401
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def query() -> int:
        engine = create_async_engine("sqlite+aiosqlite:///:memory:")
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text("select 41 + 1"))).scalar_one()
        finally:
            await engine.dispose()

    assert asyncio.run(query()) == 42


def test_second_make_installs_nothing() -> None:
    import subprocess

    done = subprocess.run(["make", "-q", ".venv/.installed"], cwd=ROOT)
    assert done.returncode == 0, "`make venv` would reinstall: .venv/.installed is older than the pins"
