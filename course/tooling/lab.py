"""``make lab``: JupyterLab on the course, with the course's environment on PATH.

The same function builds the command for ``make lab`` and for the test that starts JupyterLab
headless (tests/test_lab.py), so what the test proves is what the learner runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from course.manifest import ROOT

FIRST_NOTEBOOK = "notebooks/00_start_here.ipynb"
# Not for the learner's file browser: the editable install's metadata, caches.
HIDDEN = ["__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~", "*.so", "*.dylib", "*.egg-info", ".pytest_cache"]
# JupyterLab's "Would you like to receive official Jupyter news?" prompt comes from this plugin.
DISABLED_PLUGINS = {"@jupyterlab/apputils-extension:announcements": True}
BASHRC = Path(__file__).with_name("lab_bashrc.sh")


def lab_env() -> dict[str, str]:
    """The environment for JupyterLab: the venv's bin first on PATH, so `!course ...` in a cell and
    `course ...` in a JupyterLab terminal work without activating anything."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ}
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    env["COURSE_ROOT"] = str(ROOT)
    return env


def quiet_lab_config() -> Path:
    """Disable the news prompt for this environment (page_config.json in the venv's Jupyter config,
    which only this course's JupyterLab reads). Idempotent."""
    path = Path(sys.prefix) / "etc" / "jupyter" / "labconfig" / "page_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        config = {}
    wanted = {**config.get("disabledExtensions", {}), **DISABLED_PLUGINS}
    if config.get("disabledExtensions") != wanted:
        config["disabledExtensions"] = wanted
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))
    return path


def lab_command(*, port: int | None = None, token: str | None = None, open_browser: bool = True,
                extra: list[str] | None = None, root_dir: Path = ROOT) -> list[str]:
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}",
        # A login shell would reset PATH from /etc/profile; this rc file keeps the course's first.
        "--ServerApp.terminado_settings=" + json.dumps({"shell_command": ["/bin/bash", "--rcfile", str(BASHRC), "-i"]}),
        "--ServerApp.ip=127.0.0.1",
        "--ContentsManager.hide_globs=" + json.dumps(HIDDEN),
        # No news feed, no update check: nothing to click away before the first notebook.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI and many containers run as root; Jupyter refuses without it
    return cmd + (extra or [])


def start(**kwargs) -> subprocess.Popen:
    """Start JupyterLab in the background (used by the tests)."""
    log = kwargs.pop("log", subprocess.DEVNULL)
    quiet_lab_config()
    return subprocess.Popen(lab_command(**kwargs), env=lab_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def wait_ready(proc: subprocess.Popen, base: str, token: str, log_path: Path, timeout: float = 60) -> None:
    """Wait until JupyterLab at ``base`` answers /api/status; AssertionError (with the end of its
    log) if it exits or is not ready within ``timeout`` seconds. Used by the tests."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"JupyterLab exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
        try:
            if httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"JupyterLab not ready in {timeout:g} s:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.tooling.lab", description="Open JupyterLab on the course.")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--no-browser", action="store_true")
    args, extra = parser.parse_known_args(argv)
    quiet_lab_config()
    cmd = lab_command(port=args.port, open_browser=not args.no_browser, extra=extra)
    print("Opening JupyterLab on the course. Stop it with Ctrl+C (twice).", flush=True)
    try:
        return subprocess.call(cmd, env=lab_env(), cwd=ROOT)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
