"""Run a small test suite with a real ``pytest`` in a subprocess, in a temporary folder, in
the order given on the command line, and report each test's outcome."""

import asyncio
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class SuiteRun:
    order: list[str]
    outcomes: dict[str, str] = field(default_factory=dict)  # "file.py::test" -> "PASSED"/"FAILED"
    output: str = ""

    @property
    def failed(self) -> list[str]:
        return [t for t, o in self.outcomes.items() if o != "PASSED"]

    def summary(self) -> str:
        lines = [f"pytest {' '.join(self.order)}"]
        lines += [f"  {o:<7} {t}" for t, o in self.outcomes.items()]
        return "\n".join(lines)


async def run_suite(suite: str, order: list[str], *, replace: tuple[str, str, str] | None = None,
                    timeout: float = 60) -> SuiteRun:
    """Copy ``suite/`` and ``auth_app.py`` to a temporary folder and run pytest there.

    ``replace=(file, old, new)`` edits one file of the copy first (``old`` must occur once).
    """
    with tempfile.TemporaryDirectory(prefix="suite-") as tmp:
        shutil.copytree(HERE / suite, tmp, dirs_exist_ok=True)
        shutil.copy(HERE / "auth_app.py", tmp)
        if replace:
            path, old, new = Path(tmp) / replace[0], replace[1], replace[2]
            text = path.read_text()
            assert text.count(old) == 1, f"{old!r} is not exactly once in {replace[0]}"
            path.write_text(text.replace(old, new))
        cmd = [sys.executable, "-m", "pytest", *order, "-q", "-rA", "--color=no",
               "-p", "no:cacheprovider", "-p", "no:randomly"]
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=tmp, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            if proc.returncode is None:  # timed out or cancelled: do not leave it running
                proc.kill()
                await proc.wait()
    run = SuiteRun(order=order, output=out.decode(errors="replace"))
    for outcome, test in re.findall(r"^(PASSED|FAILED|ERROR) (\S+)", run.output, flags=re.M):
        run.outcomes[test] = outcome
    return run
