"""``make test``: every check CI runs, with the times printed so drift is visible."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from course.checking import ROOT


def main() -> int:
    start = time.perf_counter()
    env = {**os.environ}
    env.pop("FORCE_COLOR", None)
    cmd = [sys.executable, "-m", "pytest", "course/tests", "tests", "-p", "no:randomly", "-rfE", "--durations=15",
           "--color=no"]
    print("$ " + " ".join(cmd[2:]), flush=True)
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    print(f"\nmake test: {'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s "
          f"(exit code {code})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
