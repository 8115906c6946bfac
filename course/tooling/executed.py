"""The executed notebooks: each notebook as the notebook test last ran it, outputs and all.

The notebooks are stored without outputs. Three things are made from what they print when they
run: the error index (ERRORS.md, ``course why``), the impact table (IMPACT.md) and the answers in
the instructor guide (workshop/INSTRUCTORS.md); and the site shows them. One mechanism feeds all
of them, so a notebook is executed once per run, never once per reader:

* ``tests/test_notebooks.py`` (``make test``) runs every notebook through
  :func:`course.tooling.nbtools.execute`, which saves the executed copy here:
  ``build/executed/NN_topic.ipynb`` (``COURSE_EXECUTED_DIR`` moves the folder), written only when
  the notebook passed, removed when it failed (another of the course's venvs writes to a folder of
  its own: see store()).
* Each copy carries, in its metadata (``course``), the fingerprint of the sources it ran from (every
  cell's source and the notebook's demo folder), when it ran, the Python and library versions, and
  whether the service sections were required. A copy whose fingerprint no longer matches the
  notebook is **stale**: no reader uses it.
* Readers ask :func:`executed` (one notebook) or :func:`require` (a test: skips naming what is
  missing or stale and how to make it; under ``CI=true`` it fails, as CI must run the test).
  ``make test`` runs those tests in its last phase, after every notebook has run.
* ``python -m course.tooling.executed [NN ...]`` executes the missing or stale ones (one at a
  time), for ``make pages`` and ``make site`` outside ``make test``; ``--status`` lists them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from course.manifest import ROOT, Module, find_module, modules

__all__ = ["store", "store_path", "fingerprint", "save", "executed", "Executed", "status", "require",
           "ensure", "libraries", "ran_every_section"]

_SKIP = ("__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis")
_SOURCES = (".py", ".ini", ".toml", ".cfg", ".yml", ".yaml", ".json", ".txt", ".sql", ".csv")


def store() -> Path:
    """The folder of executed copies: ``build/executed`` unless ``COURSE_EXECUTED_DIR`` says otherwise.
    Run from another of the course's environments (``make test-python``'s .venv-3.12, ``make
    test-latest``'s .venv-latest), the copies go to ``build/executed-<venv>``: other versions' outputs
    never mix with the course's."""
    if os.environ.get("COURSE_EXECUTED_DIR"):
        return Path(os.environ["COURSE_EXECUTED_DIR"])
    prefix = Path(sys.prefix).resolve()
    if prefix.parent == ROOT and prefix.name.startswith(".venv") and prefix.name != ".venv":
        return ROOT / "build" / f"executed-{prefix.name.lstrip('.')}"
    return ROOT / "build" / "executed"


def store_path(notebook: Path) -> Path:
    return store() / Path(notebook).name


def fingerprint(notebook: Path) -> str:
    """What an executed copy depends on: every cell's type and source, and the notebook's demo folder
    (``notebooks/NN_topic/``). Outputs and metadata do not count (the stored notebook has none)."""
    from course.pages.lessons import read

    notebook = Path(notebook)
    h = hashlib.sha256()
    nb = read(notebook)
    for cell in nb.cells:
        h.update(cell.cell_type.encode() + b"\0" + cell.source.encode() + b"\0")
    demo = notebook.with_suffix("")
    if demo.is_dir():
        # the sources only: what a run writes there (databases, logs, caches) must not count
        for path in sorted(p for p in demo.rglob("*") if p.is_file() and p.suffix in _SOURCES):
            if any(s in path.parts for s in _SKIP):
                continue
            h.update(str(path.relative_to(demo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _requirement_names() -> list[str]:
    names = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.-]+)", line.split("#")[0])
        if m:
            names.append(m[1])
    return names


def libraries() -> dict[str, str]:
    """The versions of requirements.txt's packages in this environment (the kernel's: the notebook
    test runs the kernel from the same venv)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in _requirement_names():
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def save(nb, notebook: Path, seconds: float, fingerprint_before: str | None = None) -> Path:
    """Write the executed ``nb`` (of ``notebook``) to the store, atomically, with its provenance.
    ``fingerprint_before``: the sources' fingerprint taken before the run (an edit made while the
    notebook ran must leave the copy stale)."""
    import nbformat

    from course.services import services_required

    notebook = Path(notebook)
    nb.metadata["course"] = {
        "fingerprint": fingerprint_before or fingerprint(notebook),
        "executed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "python": platform.python_version(),
        "libraries": libraries(),
        "services_required": services_required(),
    }
    out = store_path(notebook)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    return out


def forget(notebook: Path) -> None:
    """A notebook that failed has no executed copy: the readers must not use an older one."""
    store_path(notebook).unlink(missing_ok=True)


@dataclass(frozen=True)
class Executed:
    module: Module
    nb: object  # nbformat.NotebookNode

    @property
    def meta(self) -> dict:
        return dict(self.nb.metadata.get("course", {}))


def ran_every_section(e: Executed) -> bool:
    """Whether every section ran: the run required the services (COURSE_REQUIRE_SERVICES=1), or none
    was missing (course.services and course.databases print "... is not reachable ..." when one is,
    and the section skips)."""
    if e.meta.get("services_required"):
        return True
    from course.pages.lessons import cell_text

    return not any("is not reachable" in cell_text(c) for c in e.nb.cells if c.cell_type == "code")


def status(module: Module) -> str:
    """``"fresh"``, ``"missing"`` or ``"stale"`` (the notebook or its demo folder changed since); ``"no
    notebook"`` for a module whose notebook is not written yet (tests/test_module_files.py says so)."""
    if not module.notebook.exists():
        return "no notebook"
    path = store_path(module.notebook)
    if not path.exists():
        return "missing"
    try:
        recorded = json.loads(path.read_text())["metadata"]["course"]["fingerprint"]
    except (OSError, ValueError, KeyError):
        return "stale"
    return "fresh" if recorded == fingerprint(module.notebook) else "stale"


def executed(module: Module) -> Executed | None:
    """The module's executed notebook, or None when it is missing or stale."""
    from course.pages.lessons import read

    if status(module) != "fresh":
        return None
    return Executed(module, read(store_path(module.notebook)))


def _how_to_make(names: list[str]) -> str:
    numbers = " ".join(n.split("_")[0] for n in names)
    return (f"run `make test` (its notebook test saves them), or `.venv/bin/python -m course.tooling.executed "
            f"{numbers}` (executes only those)")


def require(mods: list[Module] | None = None) -> dict[str, Executed]:
    """For a test: every module's executed notebook (by module number). Skips when one is missing or
    stale, naming them and the command that makes them; fails under ``CI=true``."""
    import pytest

    mods = [m for m in (modules() if mods is None else mods) if m.notebook.exists()]
    states = {m.name: status(m) for m in mods}
    why = {"missing": "missing: not run, or it failed", "stale": "stale: the notebook changed since it ran"}
    bad = [f"{name} ({why.get(state, state)})" for name, state in states.items() if state != "fresh"]
    if bad:
        message = (f"this test reads the executed notebooks in {store()}; not there: {', '.join(bad)}. Make them: "
                   + _how_to_make([n for n, s in states.items() if s != "fresh"]))
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: CI must run this test, not skip it)", pytrace=False)
        pytest.skip(message)
    return {m.number: executed(m) for m in mods}


def ensure(mods: list[Module] | None = None, *, quiet: bool = False,
           require_services: bool = False) -> dict[str, Executed]:
    """Every module's executed notebook, executing (one at a time) those missing or stale.
    ``require_services``: also those where a section skipped for want of a service, now with
    COURSE_REQUIRE_SERVICES=1: the generated pages must come from a run where every section ran."""
    from course.tooling.nbtools import execute

    mods = [m for m in (modules() if mods is None else mods) if m.notebook.exists()]
    for m in mods:
        state = status(m)
        if state == "fresh" and require_services and not ran_every_section(executed(m)):
            state = "a section skipped for want of a service"
        if state != "fresh":
            if not quiet:
                print(f"executing {m.notebook.name} ({state} in {store()}) ...", flush=True)
            env = {**os.environ, "COURSE_REQUIRE_SERVICES": "1"} if require_services else None
            seconds = execute(m.notebook, save=True, env=env)
            if not quiet:
                print(f"  ran in {seconds:.0f} s", flush=True)
    return {m.number: executed(m) for m in mods}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course.tooling.executed",
                                     description="Execute the notebooks missing or stale in build/executed.")
    parser.add_argument("modules", nargs="*", help="module numbers (default: every module)")
    parser.add_argument("--status", action="store_true", help="only list each notebook's state")
    args = parser.parse_args(argv)
    mods = [find_module(n, graded=False) for n in args.modules] if args.modules else modules()
    if args.status:
        for m in mods:
            print(f"{status(m):<8} {m.notebook.name}")
        return 0
    ensure(mods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
