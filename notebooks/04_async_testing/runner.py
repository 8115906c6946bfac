"""Run a small pytest project in a subprocess and read back what happened.

    run = run_pytest({"conftest.py": DEMO / "conftest_lifespan.py", "test_items.py": DEMO / "items_tests.py"},
                     ini=FUNCTION_LOOPS)
    run.counts          # {"passed": 3, "failed": 1, "error": 0}
    run["test_list_starts_empty"].message   # the real error text

Each run gets a fresh temporary folder holding the files, the demo app and a pytest.ini of its
own, so the repository's pytest settings never apply. pytest runs in a separate process (a
notebook kernel already runs an event loop, and pytest-asyncio needs its own) with a timeout;
results come from its JUnit XML report. The folder is removed afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from course.server import stop_process

HERE = Path(__file__).resolve().parent
# Runs go to memory-backed /dev/shm where there is one: a shared machine's disk makes every fsync (and
# so every commit and every CREATE TABLE outside a transaction) anywhere from 1 to 50 ms.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
ALWAYS = ("app.py", "padding.py", "timing.py")  # copied into every run

# Strict mode, every test and function-scoped fixture in its own event loop (pytest-asyncio's default).
FUNCTION_LOOPS = {"asyncio_mode": "strict", "asyncio_default_fixture_loop_scope": "function",
                  "asyncio_default_test_loop_scope": "function"}
# Strict mode, one event loop for the whole session: every fixture and test share it.
SESSION_LOOPS = {"asyncio_mode": "strict", "asyncio_default_fixture_loop_scope": "session",
                 "asyncio_default_test_loop_scope": "session"}


@dataclass
class CaseResult:
    name: str
    file: str
    outcome: str  # passed, failed, error, skipped
    message: str
    seconds: float  # setup + call + teardown, wall time, from pytest's report
    cpu_seconds: float | None = None  # the same in CPU time of the pytest process (timing.py)


@dataclass
class PytestRun:
    args: list[str]
    returncode: int
    seconds: float
    output: str
    tests: dict[str, CaseResult] = field(default_factory=dict)

    def __getitem__(self, name: str) -> CaseResult:
        return self.tests[name]

    @property
    def counts(self) -> dict[str, int]:
        return {k: sum(1 for t in self.tests.values() if t.outcome == k) for k in ("passed", "failed", "error")}

    def outcomes(self) -> dict[str, str]:
        return {name: t.outcome for name, t in self.tests.items()}

    def messages(self) -> list[str]:
        """The first line of every failure and error, in order."""
        return [t.message.strip().splitlines()[0] for t in self.tests.values()
                if t.outcome in ("failed", "error") and t.message.strip()]

    def typical_ms(self, cpu: bool = True) -> float:
        """CPU (or wall) time per passed test, setup + call + teardown, in milliseconds: the mean of
        the middle 80% (trimming drops the first test, which pays for the session's fixtures)."""
        times = sorted(t.cpu_seconds if cpu else t.seconds for t in self.tests.values() if t.outcome == "passed")
        cut = len(times) // 10
        return 1000 * statistics.fmean(times[cut:len(times) - cut])

    def __str__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v) or "no tests"
        lines = [f"pytest {' '.join(self.args)}".rstrip() + f"  ->  exit code {self.returncode}, {counts} ({self.seconds:.1f} s)"]
        width = max((len(n) for n in self.tests), default=0)
        for name, t in self.tests.items():
            line = f"  {t.outcome.upper():<7} {name:<{width}}"
            if t.outcome in ("failed", "error") and t.message.strip():
                line += "  " + " ".join(t.message.split())[:150]
            lines.append(line)
        if not self.tests:
            lines.append(self.output[-1500:])
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def ini_text(ini: Mapping[str, str]) -> str:
    return "[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in {**ini, "timeout": ini.get("timeout", "30")}.items())


def _read_junit(path: Path) -> dict[str, CaseResult]:
    tests: dict[str, CaseResult] = {}
    if not path.exists():
        return tests
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                outcome, message = name, (node.get("message") or node.text or "")
                break
        tests[case.get("name", "")] = CaseResult(case.get("name", ""), case.get("classname", ""), outcome,
                                                 message, float(case.get("time") or 0))
    return tests


def run_pytest(files: Mapping[str, str | os.PathLike], *args: str, ini: Mapping[str, str] = FUNCTION_LOOPS,
               env: Mapping[str, str] | None = None, timeout: float = 60.0) -> PytestRun:
    """Copy ``files`` (name in the run folder -> demo file) into a fresh folder and run pytest there.

    ``args`` go to pytest as they are (``-n 2``, node ids to choose the order...). Raises
    ``TimeoutError`` if pytest is still running after ``timeout`` seconds (it is killed, with any
    xdist workers).
    """
    with tempfile.TemporaryDirectory(prefix="course04-", dir=SCRATCH) as tmp:
        folder = Path(tmp)
        for name in ALWAYS:
            shutil.copy(HERE / name, folder / name)
        for name, source in files.items():
            shutil.copy(HERE / source if not Path(source).is_absolute() else source, folder / name)
        (folder / "pytest.ini").write_text(ini_text(ini))
        cmd = [sys.executable, "-m", "pytest", "-p", "timing", *args, "-q", "--tb=line", "--color=no", "-p", "no:cacheprovider",
               "--junitxml", str(folder / "junit.xml"), "--basetemp", str(folder / "tmp")]
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FORCE_COLOR", "DATABASE_URL"))}
        run_env.update({"PYTHONDONTWRITEBYTECODE": "1", **(env or {})})
        start = time.perf_counter()
        with (folder / "output.txt").open("w") as log:
            proc = subprocess.Popen(cmd, cwd=folder, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, timeout=5)
            raise TimeoutError(f"pytest {' '.join(args)} still running after {timeout} s:\n"
                               + (folder / "output.txt").read_text()[-2000:]) from None
        finally:
            if proc.poll() is None:  # interrupted (KeyboardInterrupt): do not leave it running
                stop_process(proc, timeout=5)
        tests = _read_junit(folder / "junit.xml")
        for path in folder.glob("times-*.json"):
            for name, (cpu, _wall) in json.loads(path.read_text()).items():
                if name in tests:
                    tests[name].cpu_seconds = cpu
        return PytestRun(list(args), proc.returncode, time.perf_counter() - start,
                         (folder / "output.txt").read_text(errors="replace"), tests)
