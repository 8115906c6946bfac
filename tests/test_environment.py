"""The environment is pinned, and conda and pip describe the same one."""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from course.manifest import ROOT


def pip_pins(path: Path, *, here_only: bool = False) -> dict[str, str]:
    """name -> pinned version. ``here_only``: only the lines whose environment marker applies to
    this Python (the lock serves 3.11 to 3.13: ``overrides==7.7.0 ; python_version < "3.12"``)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {line!r} is not pinned with =="
        if here_only and req.marker is not None and not req.marker.evaluate():
            continue
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def supported_by_pyproject() -> list[str]:
    """The minor versions pyproject.toml's requires-python admits, newest first."""
    import tomllib

    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(40, 5, -1) if f"3.{minor}" in spec]


def makefile_pythons() -> list[str]:
    found = re.findall(r"^SUPPORTED_PYTHONS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert len(found) == 1, "the Makefile defines SUPPORTED_PYTHONS once"
    return found[0].split()


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
    # conda's `python=3.11` is a prefix match: one of the supported versions (the oldest, on purpose;
    # see the comment in environment.yml).
    assert conda.get("python") in supported_by_pyproject(), conda.get("python")


def test_supported_pythons_agree() -> None:
    """pyproject's requires-python, the Makefile's candidates and course.tooling.pythons name the
    same versions, and this Python is one of them."""
    from course.tooling import pythons

    supported = supported_by_pyproject()
    assert supported, "pyproject.toml's requires-python admits no Python 3 version"
    assert makefile_pythons() == supported, f"Makefile SUPPORTED_PYTHONS {makefile_pythons()} != {supported}"
    assert list(pythons.SUPPORTED) == supported, f"course.tooling.pythons.SUPPORTED {pythons.SUPPORTED} != {supported}"
    assert "%d.%d" % sys.version_info[:2] in supported, sys.version


def test_make_finds_the_python_the_tools_find() -> None:
    """Without PYTHON=, make picks the interpreter course.tooling.pythons.preferred() picks (the
    first that runs: python3.13, 3.12, 3.11 on PATH, then pyenv's), and it is a supported one."""
    import subprocess

    from course.tooling import pythons

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "print-python: ; @echo '[$(PYTHON)]'",
                           "print-python"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    chosen = done.stdout.strip().removeprefix("[").removesuffix("]")
    best = pythons.preferred()
    assert chosen == (best.command if best else ""), f"make chose {chosen!r}, course.tooling.pythons {best}"
    if best is not None:
        assert best.version in pythons.SUPPORTED


def test_lock_agrees_with_pins() -> None:
    pins = pip_pins(ROOT / "requirements.txt")
    lock = pip_pins(ROOT / "requirements-lock.txt")
    disagree = {name: (v, lock.get(name)) for name, v in pins.items() if lock.get(name) != v}
    assert not disagree, f"requirements-lock.txt disagrees with requirements.txt: {disagree}"


def test_installed_matches_lock() -> None:
    """The running environment is the pinned one (a stale .venv would make results drift): every
    lock entry whose marker applies to this Python is installed at its version."""
    lock = pip_pins(ROOT / "requirements-lock.txt", here_only=True)
    wrong = {}
    for name, version in lock.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from requirements-lock.txt (pinned, installed): {wrong}"
    assert "%d.%d" % sys.version_info[:2] in supported_by_pyproject(), f"Python {sys.version} is not supported"


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
