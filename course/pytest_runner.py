"""Run a pytest suite in a subprocess and read back what happened, test by test.

The one way the course runs pytest: notebooks (a kernel already runs an event loop, so pytest
must run in its own process), the check drivers, the grader and ``make test`` all use it.

    run = run_pytest("test_items.py", files={"conftest.py": DEMO / "conftest_lifespan.py",
                                             "test_items.py": DEMO / "items_tests.py"},
                     ini=FUNCTION_LOOPS, timeout=60)
    run.counts                            # {"passed": 3, "failed": 1, "error": 0, "skipped": 0}
    run["test_list_starts_empty"].message  # the real error text
    run.typical()                          # trimmed mean CPU seconds per passed test

* ``files`` given: a fresh scratch folder (memory-backed ``/dev/shm`` where there is one) holds
  them, with a ``pytest.ini`` from ``ini``; it is removed afterwards, also on failure or timeout.
  Without ``files`` pytest runs in ``cwd``.
* The environment is cleaned of what changes pytest's output or configuration from outside
  (:data:`DROPPED_ENV`: ``FORCE_COLOR``, ``PYTEST_ADDOPTS``, ...; a kernel sets ``FORCE_COLOR=1``).
* pytest runs in its own process group; on timeout (or an interrupt) the whole group is stopped,
  pytest-xdist workers included. ``timed_out`` says so; nothing is left running.
* Results come from a small plugin (:mod:`course.pytest_results`): outcome, duration, CPU time,
  message, and the grader's expectation data, per test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from course.processes import stop_tree

__all__ = ["TestResult", "SuiteRun", "PytestProcess", "start_pytest", "run_pytest", "arun_pytest", "clean_env",
           "ini_text", "FUNCTION_LOOPS", "SESSION_LOOPS", "SCRATCH", "DROPPED_ENV"]

# Memory-backed /dev/shm where there is one: a shared machine's disk makes every fsync (every commit,
# every CREATE TABLE outside a transaction) anywhere from 1 to 50 ms.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()

DROPPED_ENV = ("FORCE_COLOR", "PY_COLORS", "NO_COLOR", "CLICOLOR_FORCE",  # colours (a kernel sets FORCE_COLOR=1)
               "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_", "PYTEST_VERSION",
               "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "COV_",  # pytest's configuration, or an outer pytest's state
               "PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONASYNCIODEBUG")  # what Python warns and logs
"""Prefixes of the environment variables dropped before the course runs pytest or the learner's code
(:func:`clean_env`; the grader's drivers, the old-forms probes): set in a learner's shell or kernel,
they would change what a run prints or how pytest is configured, so its results would not be
comparable. ``PYTHONPATH`` stays: the workshop hub and ``course`` run from a clone rely on it."""

# Strict mode, every test and function-scoped fixture in its own event loop (pytest-asyncio's default).
FUNCTION_LOOPS = {"asyncio_mode": "strict", "asyncio_default_fixture_loop_scope": "function",
                  "asyncio_default_test_loop_scope": "function"}
# Strict mode, one event loop for the whole session: every fixture and test share it.
SESSION_LOOPS = {"asyncio_mode": "strict", "asyncio_default_fixture_loop_scope": "session",
                 "asyncio_default_test_loop_scope": "session"}


def clean_env(extra: Mapping[str, str] | None = None, drop: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment without what changes pytest from outside, plus ``extra``."""
    prefixes = (*DROPPED_ENV, *drop)
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def ini_text(ini: Mapping[str, Any]) -> str:
    """A ``pytest.ini`` with these options (a per-test ``timeout`` of 30 s unless given)."""
    options = {**ini, "timeout": ini.get("timeout", 30)}
    return "[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    nodeid: str
    name: str  # test name with its parameters: "test_create[3]"
    file: str  # the test file's stem
    outcome: str  # passed, failed, error (in a fixture or at collection), skipped
    message: str = ""  # the first lines of the failure
    duration: float = 0.0  # wall seconds, setup + call + teardown
    cpu: float = 0.0  # CPU seconds of the process that ran it (all its threads)
    doc: str = ""  # the first line of the test's docstring
    longrepr: str = ""
    repeat: int = 0  # 0 on a node id's first run, 1 on its second (--keep-duplicates), ...
    worker: str = "main"
    unmet: dict[str, Any] | None = None  # a check's expectation (course.grading), when it raised one

    @property
    def first_line(self) -> str:
        lines = [line for line in self.message.strip().splitlines() if line.strip()]
        return lines[0] if lines else ""


@dataclass
class SuiteRun:
    args: list[str]
    returncode: int | None
    seconds: float
    output: str
    timed_out: bool = False
    tests: list[TestResult] = field(default_factory=list)

    def __getitem__(self, name: str) -> TestResult:
        """The first result whose name (or node id) is ``name``."""
        for t in self.tests:
            if name in (t.name, t.nodeid):
                return t
        raise KeyError(f"no test {name!r} in this run (ran: {[t.name for t in self.tests]})")

    def __contains__(self, name: str) -> bool:
        return any(name in (t.name, t.nodeid) for t in self.tests)

    @property
    def counts(self) -> dict[str, int]:
        return {k: sum(1 for t in self.tests if t.outcome == k) for k in ("passed", "failed", "error", "skipped")}

    @property
    def failed(self) -> list[TestResult]:
        """Failures and errors, in the order they ran."""
        return [t for t in self.tests if t.outcome in ("failed", "error")]

    @property
    def passed(self) -> bool:
        return not self.timed_out and self.returncode == 0 and not self.failed

    def outcomes(self) -> dict[str, str]:
        return {t.name: t.outcome for t in self.tests}

    def messages(self) -> list[str]:
        """The first line of every failure and error, in order."""
        return [t.first_line for t in self.failed if t.first_line]

    def typical(self, *, cpu: bool = True, trim: float = 0.1) -> float:
        """Seconds per passed test (CPU by default, else wall): the mean of the middle of the
        sorted times, ``trim`` cut from each end (it drops the first test, which pays for the
        session's fixtures, and a straggler)."""
        times = sorted(t.cpu if cpu else t.duration for t in self.tests if t.outcome == "passed")
        if not times:
            raise ValueError(f"no test passed, so there is no typical time:\n{self}")
        cut = int(len(times) * trim)
        return statistics.fmean(times[cut:len(times) - cut] or times)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output.strip().splitlines()[-lines:])

    def __str__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v) or "no tests"
        state = "stopped at the timeout" if self.timed_out else f"exit code {self.returncode}"
        shown, skip = [], False
        for arg in self.args:  # the scratch folder's --basetemp says nothing to a reader
            if skip or arg == "--basetemp":
                skip = not skip
                continue
            shown.append(arg)
        head = f"pytest {' '.join(shown)}".rstrip() + f"  ->  {state}, {counts} ({self.seconds:.1f} s)"
        width = max((len(t.name) for t in self.tests), default=0)
        lines = [head]
        for t in self.tests:
            line = f"  {t.outcome.upper():<7} {t.name:<{width}}"
            if t.outcome in ("failed", "error") and t.message.strip():
                line += "  " + " ".join(t.message.split())[:150]
            lines.append(line)
        if not self.tests or self.timed_out:
            lines.append(self.tail(25))
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class PytestProcess:
    """A pytest run under way. ``wait()`` returns its :class:`SuiteRun` and removes the scratch folder."""

    def __init__(self, args: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float, scratch: Path | None,
                 stream: bool, results_dir: str | os.PathLike | None = None) -> None:
        self.args, self.cwd, self.timeout, self.scratch = args, cwd, timeout, scratch
        self._results_dir = Path(tempfile.mkdtemp(prefix="course-pytest-", dir=results_dir or SCRATCH))
        self.results = self._results_dir / "results.json"
        self._output = self._results_dir / "output.txt"
        # hypothesis (pinned for notebook 05) registers a pytest plugin that imports all of hypothesis at
        # start-up: 0.6 s of every pytest run here (1.0 s instead of 0.4 s for one trivial test), and no
        # suite the course runs uses it. Blocking a plugin by name is harmless where it is not installed.
        cmd = [sys.executable, "-m", "pytest", "-p", "course.pytest_results", "--course-results", str(self.results),
               "--color=no", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args]
        self.started = time.perf_counter()
        out = None if stream else self._output.open("w")
        try:
            # Its own process group, so a timeout stops pytest-xdist's workers too. The output goes
            # to a file, never to a pipe nobody reads (a child that inherits the pipe would hold it).
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT if out else None,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            self._cleanup()
            raise
        finally:
            if out is not None:
                out.close()

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def wait(self) -> SuiteRun:
        timed_out = False
        try:
            try:
                self.proc.wait(max(0.0, self.timeout - self.elapsed))
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                # Stops the group on a timeout or an interrupt, and clears stray children of a run that
                # ended (group=True: pytest may already be reaped, its group's stragglers still run).
                stop_tree(self.proc, timeout=5, group=True)
            seconds = self.elapsed
            output = self._output.read_text(errors="replace") if self._output.exists() else ""
            tests = []
            if self.results.exists():
                tests = [TestResult(**rec) for rec in json.loads(self.results.read_text())]
            return SuiteRun(self.args, None if timed_out else self.proc.returncode, seconds, output, timed_out, tests)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self._results_dir, ignore_errors=True)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def start_pytest(*args: str, files: Mapping[str, str | os.PathLike] | None = None,
                 ini: Mapping[str, Any] | None = None, cwd: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, drop_env: Iterable[str] = (), timeout: float = 60.0,
                 prefix: str = "course-run-", stream: bool = False,
                 scratch_dir: str | os.PathLike | None = None) -> PytestProcess:
    """Start pytest without waiting (several runs at once); see :func:`run_pytest`."""
    scratch = None
    if files is not None:
        scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_dir or SCRATCH))
        try:
            for name, source in files.items():
                dest = scratch / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                source = Path(source)
                if source.is_dir():
                    shutil.copytree(source, dest, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
                else:
                    shutil.copy(source, dest)
            if ini is not None:
                (scratch / "pytest.ini").write_text(ini_text(ini))
            args = (*args, "--basetemp", str(scratch / ".tmp"))
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    elif ini is not None:
        raise ValueError("ini= needs files= (a scratch folder to write pytest.ini into)")
    folder = scratch if scratch is not None else Path(cwd or os.getcwd())
    return PytestProcess(list(args), cwd=folder, env=clean_env(env, drop_env), timeout=timeout, scratch=scratch,
                         stream=stream, results_dir=scratch_dir)


def run_pytest(*args: str, files: Mapping[str, str | os.PathLike] | None = None, ini: Mapping[str, Any] | None = None,
               cwd: str | os.PathLike | None = None, env: Mapping[str, str] | None = None, drop_env: Iterable[str] = (),
               timeout: float = 60.0, prefix: str = "course-run-", stream: bool = False,
               scratch_dir: str | os.PathLike | None = None) -> SuiteRun:
    """Run ``python -m pytest *args`` and return what happened to each test.

    ``files``: name in the scratch folder -> a file or folder to copy there (then pytest runs
    there and ``ini`` becomes its ``pytest.ini``); otherwise pytest runs in ``cwd``. ``env`` adds
    variables, ``drop_env`` removes more prefixes. ``timeout``: seconds for the whole run, after
    which its process group is stopped and ``timed_out`` is set (it does not raise). ``stream``:
    pytest writes to this process's stdout instead of a file (``make test``). ``scratch_dir``: where
    the scratch folder goes (default: SCRATCH), e.g. a driver's own folder, removed with it.
    """
    return start_pytest(*args, files=files, ini=ini, cwd=cwd, env=env, drop_env=drop_env, timeout=timeout,
                        prefix=prefix, stream=stream, scratch_dir=scratch_dir).wait()


async def arun_pytest(*args: str, **kwargs: Any) -> SuiteRun:
    """:func:`run_pytest` from async code (a notebook cell): ``await arun_pytest(...)``; several
    with ``asyncio.gather`` run at once."""
    return await asyncio.to_thread(run_pytest, *args, **kwargs)
