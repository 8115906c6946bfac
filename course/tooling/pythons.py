"""The Pythons the course supports, the ones on this machine, and ``make test-python``.

    python -m course.tooling.pythons                  # the supported versions found, and where
    python -m course.tooling.pythons test             # make test-python: the suite on each of them
    python -m course.tooling.pythons test 3.12 3.13   # only these
    python -m course.tooling.pythons test -- -k env   # the rest goes to course.tooling.testrun

Each version runs in a venv of its own: ``.venv`` for the version ``make venv`` built it with, and
``.venv-3.12``, ``.venv-3.13``, ... for the others, with the same pins (``requirements.txt`` and
``requirements-lock.txt``, whose environment markers say what only some versions install) and the
course package (editable). A venv is rebuilt only when the pins are newer than it, like ``.venv``.

Interpreters are looked up in the Makefile's order: ``python3.13``, ``python3.12``, ``python3.11``
on PATH, then pyenv's installed versions. A candidate counts only if it runs and is that version:
pyenv puts a shim on PATH for every version it knows, and a shim for a version that is not
selected exits with "command not found".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from course.manifest import ROOT
from course.processes import stop_tree

__all__ = ["SUPPORTED", "Interpreter", "probe", "candidates", "find", "find_all", "preferred", "venv_for",
           "ensure_venv", "pip_install", "main"]

# Newest first, as the Makefile's SUPPORTED_PYTHONS; tests/test_environment.py checks that both agree
# with pyproject.toml's requires-python.
SUPPORTED = ("3.13", "3.12", "3.11")
PINS = ("requirements.txt", "requirements-lock.txt", "pyproject.toml")  # a venv older than these is rebuilt
PIP = ("-m", "pip", "install", "--quiet", "--disable-pip-version-check")


@dataclass(frozen=True)
class Interpreter:
    version: str  # "3.12"
    full: str  # "3.12.1"
    command: str  # as found: "python3.11" or "/root/.pyenv/versions/3.12.1/bin/python3.12"
    executable: str  # what it reports as sys.executable


def probe(command: str | os.PathLike, timeout: float = 30.0) -> Interpreter | None:
    """The interpreter behind ``command``, or None when it does not run."""
    code = "import sys; print('%d.%d' % sys.version_info[:2], sys.version.split()[0], sys.executable)"
    try:
        done = subprocess.run([str(command), "-c", code], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split(maxsplit=2)
    if done.returncode != 0 or len(parts) != 3:
        return None
    return Interpreter(parts[0], parts[1], str(command), parts[2].strip())


def _pyenv_root() -> Path:
    if shutil.which("pyenv"):
        try:
            done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
            if done.returncode == 0 and done.stdout.strip():
                return Path(done.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def _patch(path: Path) -> tuple[int, ...]:
    """``.../versions/3.12.10/bin/python3.12`` -> (3, 12, 10), to try the newest patch release first."""
    numbers = []
    for part in path.parents[1].name.split("."):
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits or 0))
    return tuple(numbers)


def candidates(version: str, where: str = "both") -> list[str]:
    """Commands that may be Python ``version``: on PATH (``where="path"``), in pyenv's versions
    (``"pyenv"``), or both, in that order."""
    found = []
    if where in ("path", "both") and shutil.which(f"python{version}"):
        found.append(f"python{version}")
    if where in ("pyenv", "both"):
        paths = (_pyenv_root() / "versions").glob(f"{version}.*/bin/python{version}")
        found += [str(p) for p in sorted(paths, key=_patch, reverse=True)]
    return found


def find(version: str) -> Interpreter | None:
    """The first candidate for ``version`` that runs and is that version."""
    for command in candidates(version):
        found = probe(command)
        if found is not None and found.version == version:
            return found
    return None


def find_all(versions: tuple[str, ...] = SUPPORTED) -> dict[str, Interpreter | None]:
    return {v: find(v) for v in versions}


def preferred() -> Interpreter | None:
    """The interpreter ``make venv`` takes without PYTHON=: on PATH newest first, then pyenv's."""
    for where in ("path", "pyenv"):
        for version in SUPPORTED:
            for command in candidates(version, where):
                found = probe(command)
                if found is not None and found.version == version:
                    return found
    return None


def venv_version(folder: Path) -> str | None:
    """``"3.11"`` for a venv built with Python 3.11 (from its pyvenv.cfg), None when there is none."""
    cfg = folder / "pyvenv.cfg"
    if not cfg.exists():
        return None
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            return ".".join(value.strip().split(".")[:2])
    return None


def venv_for(version: str) -> Path:
    """``.venv`` when ``make venv`` built it with this version, else ``.venv-<version>``."""
    main = ROOT / ".venv"
    return main if venv_version(main) == version else ROOT / f".venv-{version}"


def pip_install(python: Path, *args: str) -> None:
    subprocess.run([str(python), *PIP, *args], cwd=ROOT, check=True, stdin=subprocess.DEVNULL)


def ensure_venv(folder: Path, interpreter: Interpreter | None) -> Path:
    """A venv in ``folder`` with the pins and the course package; built or refreshed only when the
    pins are newer than its stamp. Returns its python."""
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    newest = max((ROOT / name).stat().st_mtime for name in PINS)
    if stamp.exists() and stamp.stat().st_mtime >= newest and probe(python) is not None:
        return python
    start = time.perf_counter()
    if probe(python) is None:
        if interpreter is None:
            raise RuntimeError(f"{folder.name} does not exist and no interpreter was found to build it")
        print(f"building {folder.name} with {interpreter.command} (Python {interpreter.full})", flush=True)
        subprocess.run([interpreter.command, "-m", "venv", str(folder)], check=True)
    else:
        print(f"refreshing {folder.name}: the pins changed", flush=True)
    pip_install(python, "-r", "requirements.txt", "-c", "requirements-lock.txt")
    pip_install(python, "--no-deps", "-e", ".")
    stamp.touch()
    print(f"{folder.name} ready in {time.perf_counter() - start:.0f} s", flush=True)
    return python


@dataclass
class VersionRun:
    version: str
    full: str = ""
    venv: str = ""
    outcome: str = "not run"  # passed, failed, not found, could not build
    seconds: float = 0.0
    failures: tuple[str, ...] = ()
    log: str = ""

    def line(self) -> str:
        where = f"  ({self.venv}, Python {self.full})" if self.venv else ""
        took = f" in {self.seconds:4.0f} s" if self.seconds else ""
        return f"Python {self.version}: {self.outcome.upper():<8}{took}{where}"


def _failures(log: Path) -> tuple[str, ...]:
    """pytest's short summary lines (-rfE) from a run's output."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return tuple(line for line in lines if line.startswith(("FAILED ", "ERROR ")))


def run_suite(version: str, interpreter: Interpreter | None, extra: list[str]) -> VersionRun:
    folder = venv_for(version)
    result = VersionRun(version, venv=folder.name)
    if interpreter is None and venv_version(folder) != version:
        result.outcome, result.venv = "not found", ""
        return result
    try:
        python = ensure_venv(folder, interpreter)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        result.outcome = "could not build"
        result.failures = (str(exc),)
        return result
    result.full = probe(python).full
    log = folder / "test-python.log"
    result.log = str(log.relative_to(ROOT))
    env = {**os.environ, "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(folder)}
    print(f"\n########## Python {result.full} in {folder.name}: python -m course.tooling.testrun {' '.join(extra)}"
          f"\n########## (output also in {result.log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        # The suite's output goes to the terminal and to the log, line by line.
        proc = subprocess.Popen([str(python), "-m", "course.tooling.testrun", *extra], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                errors="replace")
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                out.write(line)
            code = proc.wait()
        finally:
            stop_tree(proc, timeout=30)  # an interrupt: the suite and every pytest it started
    result.seconds = time.perf_counter() - start
    result.outcome = "passed" if code == 0 else "failed"
    result.failures = _failures(log)
    return result


def test(argv: list[str]) -> int:
    """``make test-python``: the suite on every supported version found (or on those named)."""
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    unknown = [v for v in argv if v not in SUPPORTED]
    if unknown:
        print(f"not a supported version: {', '.join(unknown)} (the course supports {', '.join(SUPPORTED)})")
        return 2
    asked = tuple(argv)
    versions = tuple(v for v in sorted(SUPPORTED) if not asked or v in asked)
    found = find_all(versions)
    runs = []
    for version in versions:
        run = run_suite(version, found[version], extra)
        if run.outcome == "not found" and not asked:
            continue  # only the versions on this machine, unless named
        runs.append(run)
    print("\n===== make test-python")
    for run in runs:
        print(run.line())
        for failure in run.failures:
            print(f"    {failure}")
        if run.outcome == "failed":
            print(f"    whole output: {run.log}")
    missing = [v for v in versions if found[v] is None and venv_version(venv_for(v)) != v]
    if missing and not asked:
        print(f"not on this machine: Python {', '.join(missing)} (pyenv install {missing[0]}, or apt/brew/conda)")
    if not runs:
        print("no supported Python found")
        return 1
    return 0 if all(run.outcome == "passed" for run in runs) else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["test"]:
        return test(argv[1:])
    if argv:
        print(__doc__)
        return 2
    best = preferred()
    for version, found in find_all().items():
        where = f"{found.command} (Python {found.full})" if found else "not found"
        mark = "  <- make venv's choice" if best and found and best.command == found.command else ""
        print(f"Python {version}: {where}{mark}  venv: {venv_for(version).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
