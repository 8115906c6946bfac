"""``make test-latest``: the course's canary. The notebooks and the grader proofs, run against the
NEWEST releases of the packages in ``requirements.txt`` instead of the pins.

    python -m course.tooling.latest --python python3.11          # build .venv-latest, run, report
    python -m course.tooling.latest --python python3.11 -k 01    # a subset (any pytest selection)

Every lesson reproduces a failure and asserts it, so a library release that changes the behaviour a
lesson teaches (a failure that no longer happens, a fix that no longer works, a new message) turns a
notebook cell or a grader proof red here long before anyone bumps the pins. A failure here is that
signal, not necessarily a bug: read it, then update the lesson or keep the pin.

1. ``.venv-latest`` is rebuilt from scratch with ``--python``: ``pip install`` of requirements.txt's
   names (extras kept, versions dropped; no lock), then the course package (editable, --no-deps).
2. The versions that differ from ``requirements-lock.txt`` are listed.
3. In ``.venv-latest`` (``--inside``): the notebooks one at a time (``make test`` pairs most of
   them; alone, a failure is the new release's, not a neighbour's), the grader proofs two in
   parallel, as ``make test`` runs them. ``COURSE_LATEST=1`` is set, so a check of the installed
   versions against the pins can tell this run from a learner's stale environment.
4. Per failed notebook: the notebook, the failing cell's index (its position among all the
   notebook's cells, as nbtools counts), the cell's first line and the error; per failed grader
   proof: its name and the first unmet expectation. Exit code 0 only when everything passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from course.manifest import ROOT

__all__ = ["VENV", "unpinned_requirements", "version_changes", "notebook_failure", "proof_failure", "main"]

VENV = ROOT / ".venv-latest"
NOTEBOOKS = "tests/test_notebooks.py::test_notebook_runs"
PROOFS = "tests/test_grader_proof.py"
CANARY = ("A failure above is the course's canary, not necessarily a bug: a newer release changed a behaviour a "
          "lesson reproduces\n(a failure that no longer happens, a fix that stopped working, a new message). "
          "Decide per failure: update the lesson\nand its pins, or keep the pin and note why. CI runs the pinned "
          "environment (`make test`), which this does not change.")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Failed|Interrupt|Warning|Timeout|Group|Iteration|Unmet))"
                        r"(:\s|$)")


# ---------------------------------------------------------------- building .venv-latest (outside)

def _names(path: Path) -> list[tuple[str, str]]:
    """(requirement without its version, the line) for each requirement in ``path``."""
    from packaging.requirements import Requirement

    out = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f" ; {req.marker}" if req.marker else ""
        out.append((f"{req.name}{extras}{marker}", line))
    return out


def unpinned_requirements() -> list[str]:
    """requirements.txt's packages without their versions: ``sqlalchemy[asyncio]``, ``fastapi``, ..."""
    return [name for name, _ in _names(ROOT / "requirements.txt")]


def _pins(path: Path) -> dict[str, str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for _, line in _names(path):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        (spec,) = req.specifier
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def _installed(python: Path) -> dict[str, str]:
    code = ("import json, importlib.metadata as m; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    from packaging.utils import canonicalize_name

    return {canonicalize_name(k): v for k, v in json.loads(done.stdout).items()}


def version_changes(python: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(requirements.txt's packages, the others) whose version in ``python``'s environment differs
    from requirements-lock.txt: (name, pinned or "-", installed or "-")."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock, installed = _pins(ROOT / "requirements-lock.txt"), _installed(python)
    top = {canonicalize_name(Requirement(line).name) for _, line in _names(ROOT / "requirements.txt")}
    installed.pop("fastapi-in-production-course", None)
    for tool in ("pip", "setuptools", "wheel"):
        if tool not in lock:
            installed.pop(tool, None)
    changed = sorted((name, lock.get(name, "-"), installed.get(name, "-")) for name in set(lock) | set(installed)
                     if lock.get(name) != installed.get(name))
    return [c for c in changed if c[0] in top], [c for c in changed if c[0] not in top]


def build(python: str) -> Path:
    """A fresh .venv-latest with the newest releases. Returns its python."""
    start = time.perf_counter()
    print(f"===== make test-latest: building {VENV.name} with {python} and the NEWEST releases (no pins, no lock)",
          flush=True)
    subprocess.run([python, "-m", "venv", "--clear", str(VENV)], check=True)
    venv_python = VENV / "bin" / "python"
    pip = [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run([*pip, "--upgrade", "--upgrade-strategy", "eager", *unpinned_requirements()], check=True, cwd=ROOT)
    subprocess.run([*pip, "--no-deps", "-e", "."], check=True, cwd=ROOT)
    print(f"{VENV.name} ready in {time.perf_counter() - start:.0f} s", flush=True)
    return venv_python


def print_changes(python: Path) -> None:
    top, rest = version_changes(python)
    print("\n===== versions that differ from requirements-lock.txt (pinned -> newest)")
    if not top and not rest:
        print("none: the newest releases are the pinned ones")
    for title, rows in (("requirements.txt", top), ("their dependencies", rest)):
        if rows:
            print(f"{title}:")
            width = max(len(r[0]) for r in rows)
            for name, pinned, now in rows:
                print(f"  {name:<{width}}  {pinned:>12} -> {now}")


# ---------------------------------------------------------------- reading failures

def _exception_text(t) -> str:
    """The whole exception message of a failed test: the ``E`` lines of pytest's report (falls back
    to the message pytest keeps, which stops at 2,000 characters)."""
    lines = [line[4:] if line.startswith("E   ") else line[1:] for line in t.longrepr.splitlines()
             if line == "E" or line.startswith("E   ")]
    return ANSI.sub("", "\n".join(lines) if lines else t.message)


def _error_of(text: str) -> str:
    """The error a notebook cell raised: the traceback's last ``SomeError: message`` line."""
    lines = [line.rstrip() for line in text.splitlines()]
    for n in range(len(lines) - 1, -1, -1):
        if ERROR_LINE.match(lines[n].strip()):
            rest = [line.strip() for line in lines[n + 1:n + 3] if line.strip()]
            return " ".join([lines[n].strip(), *rest])[:400]
    tail = [line.strip() for line in lines if line.strip()]
    return tail[-1][:400] if tail else "(no message)"


def _failing_line(text: str) -> str:
    """The source line IPython's traceback points at (``---> 17 assert ...``), in the cell itself
    when the traceback shows several frames."""
    arrows = [line for line in text.splitlines() if re.match(r"^\s*-+>\s*\d+", line)]
    if not arrows:
        return ""
    return re.sub(r"^\s*-+>\s*(\d+)\s?", r"line \1: ", arrows[0]).strip()[:200]


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()
    return "(empty cell)"


def notebook_failure(t) -> str:
    """notebook, cell index, the cell's first line, the error, for a failed test_notebook_runs."""
    text = _exception_text(t)
    header = re.compile(r"([\w.-]+\.ipynb), (cell (\d+)|a cell) failed after ([\d.]+) s")
    found = header.search(text) or header.search(ANSI.sub("", t.message))
    if not found:  # the notebook ran, but a check around it failed (its time, processes left running)
        return f"NOTEBOOK {t.name}\n    {t.first_line[:400]}"
    name, index = found[1], found[3]
    first = "(the failing cell could not be identified: a timeout?)"
    if index is not None:
        nb = json.loads((ROOT / "notebooks" / name).read_text())
        source = nb["cells"][int(index)]["source"]
        first = _first_line("".join(source) if isinstance(source, list) else source)
    where = f"cell {index}" if index is not None else "a cell"
    at = _failing_line(text)
    return f"NOTEBOOK {name}, {where}: {first}\n" + (f"    at {at}\n" if at else "") + f"    {_error_of(text)}"


def proof_failure(t) -> str:
    """name and first unmet expectation, for a failed grader proof."""
    text = _exception_text(t)
    lines = [line.strip() for line in text.splitlines()]
    out = [f"GRADER PROOF {t.name}"]
    head = lines[0].removeprefix("AssertionError: ") if lines else t.first_line
    if not head.startswith("Module "):  # the proof's own words: "mistake ... was not caught by [...]"
        out.append(f"    {head[:300]}")
    for n, line in enumerate(lines):
        if line.startswith("Could not grade:"):
            out.append(f"    {line[:300]}")
        if "expectations not met" in line and "First:" in line:
            out.append(f"    first unmet expectation: {line.split('First:', 1)[1].strip()}")
            for detail in lines[n + 1:n + 6]:
                if detail.startswith(("Called:", "Expected:", "Got:")):
                    out.append(f"      {detail[:300]}")
            break
    if len(out) == 1:
        out.append(f"    {t.first_line[:300]}")
    return "\n".join(out)


# ---------------------------------------------------------------- running (inside .venv-latest)

def inside(selection: list[str]) -> int:
    from course.pytest_runner import run_pytest

    env = {"COURSE_LATEST": "1"}
    common = ["-p", "no:randomly", "-rN", *selection]
    start = time.perf_counter()
    print(f"\n===== make test-latest: the notebooks, one at a time (Python {sys.version.split()[0]}, {sys.prefix})",
          flush=True)
    nbs = run_pytest(NOTEBOOKS, *common, cwd=ROOT, env=env, timeout=3600)
    print(nbs, flush=True)
    print("\n===== make test-latest: the grader proofs, two in parallel", flush=True)
    proofs = run_pytest(PROOFS, "-n", "2", *common, cwd=ROOT, env=env, timeout=3600)
    print(proofs, flush=True)

    failures = []
    for run in (nbs, proofs):
        for t in run.failed:
            failures.append(notebook_failure(t) if t.file == "test_notebooks" else
                            proof_failure(t) if t.file == "test_grader_proof" else f"{t.name}: {t.first_line}")
        if run.timed_out or (run.returncode not in (0, 5) and not run.failed):
            failures.append(f"pytest {' '.join(run.args[:3])} did not finish cleanly:\n{run.tail(20)}")
    ran = sum(len(r.tests) for r in (nbs, proofs))
    print("\n===== make test-latest: what failed with the newest releases")
    if not ran:
        print("no test ran (does the selection match anything?)")
        return 1
    if not failures:
        print(f"nothing: all {ran} notebooks and grader proofs passed ({time.perf_counter() - start:.0f} s).")
        return 0
    print("\n\n".join(failures))
    print(f"\n{len(failures)} of {ran} failed ({time.perf_counter() - start:.0f} s).\n\n{CANARY}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make test-latest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="", help="the interpreter .venv-latest is built with")
    parser.add_argument("--inside", action="store_true", help="run the tests (in .venv-latest)")
    parser.add_argument("--no-build", action="store_true", help="reuse .venv-latest as it is")
    opts, selection = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if opts.inside:
        return inside(selection)
    python = VENV / "bin" / "python"
    if not opts.no_build or not python.exists():
        if not opts.python:
            print("no Python to build .venv-latest with: make test-latest PYTHON=/path/to/python3.13")
            return 2
        try:
            python = build(opts.python)
        except subprocess.CalledProcessError as exc:
            print(f"building {VENV.name} failed ({exc}): the newest releases may not install together on this Python")
            return 1
    print_changes(python)
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(VENV)}
    return subprocess.run([str(python), "-m", "course.tooling.latest", "--inside", *selection], cwd=ROOT,
                          env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
