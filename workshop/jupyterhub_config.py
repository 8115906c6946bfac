"""The workshop hub, as `make test-workshop` runs it: JupyterHub on one machine, a server per
learner, each learner with their own copy of the course, and an idle culler.

This file is the TESTED configuration. A real workshop runs The Littlest JupyterHub or Zero to
JupyterHub instead (workshop/README.md); what carries over from here is written there: the
environment each learner's server gets, the Lab settings, the culler, the limits.

Run it (from the repository, after `make hub-tools`):

    WORKSHOP_RUNTIME_DIR=/tmp/hub .venv-hub/bin/jupyterhub -f workshop/jupyterhub_config.py

Everything it writes goes to WORKSHOP_RUNTIME_DIR (default workshop/.hub-runtime/): the hub's
SQLite database, its cookie secret, pid files, the kernelspec, and the learners' homes. It listens
on 127.0.0.1 only. Settings (environment variables, all optional):

    WORKSHOP_RUNTIME_DIR      where the hub keeps its files (above)
    WORKSHOP_PORT             the public port (the proxy), default 8000
    WORKSHOP_HUB_PORT         the hub's own API port (servers and services talk to it), default 8081
    WORKSHOP_PROXY_API_PORT   the proxy's REST API port, default 8001
    WORKSHOP_ADMIN_TOKEN      if set: a service `workshop-admin` with this token, allowed to manage
                              users and servers and to use them (the test drives the hub with it)
    WORKSHOP_CULL_TIMEOUT     seconds of inactivity before the culler stops a server (3600)
    WORKSHOP_CULL_EVERY       how often the culler looks, seconds (300)
    WORKSHOP_COURSE_SOURCE    the course each learner gets a copy of (default: this repository's
                              working tree, uncommitted changes included)
    WORKSHOP_COURSE_VENV      the course's environment, where kernels run (default: <repo>/.venv)
    COURSE_RUN_ID             passed to every process the hub starts, so a test can find them all
    COURSE_REQUIRE_SERVICES   passed to the learners' servers (CI: sections needing a server must run)

The hub itself runs from .venv-hub (jupyterhub, the single-user server, JupyterLab); the kernels
and the `course` command run from the course's own .venv, which stays exactly as `make lab` builds
it: nothing of JupyterHub is installed there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (JupyterHub provides it)

WORKSHOP = Path(__file__).resolve().parent
REPO = WORKSHOP.parent
HUB_BIN = Path(sys.executable).parent  # .venv-hub/bin: the hub, jupyterhub-singleuser, the culler
RUNTIME = Path(os.environ.get("WORKSHOP_RUNTIME_DIR") or WORKSHOP / ".hub-runtime").resolve()
HOMES = RUNTIME / "homes"
COURSE_SOURCE = Path(os.environ.get("WORKSHOP_COURSE_SOURCE") or REPO).resolve()
COURSE_VENV = Path(os.environ.get("WORKSHOP_COURSE_VENV") or REPO / ".venv").resolve()
COURSE_DIR = "fastapi-in-production"  # each learner's copy: <home>/fastapi-in-production
PROXY = WORKSHOP / "node_modules" / ".bin" / "configurable-http-proxy"

PORT = int(os.environ.get("WORKSHOP_PORT", "8000"))
HUB_PORT = int(os.environ.get("WORKSHOP_HUB_PORT", "8081"))
PROXY_API_PORT = int(os.environ.get("WORKSHOP_PROXY_API_PORT", "8001"))
CULL_TIMEOUT = int(os.environ.get("WORKSHOP_CULL_TIMEOUT", "3600"))
CULL_EVERY = int(os.environ.get("WORKSHOP_CULL_EVERY", "300"))
MARKERS = {k: os.environ[k] for k in ("COURSE_RUN_ID", "COURSE_REQUIRE_SERVICES", "COURSE_REQUIRE_POSTGRES") if os.environ.get(k)}

# Not for the learner's file browser (the same list as `make lab`: course/tooling/lab.py HIDDEN;
# workshop/tests/test_hub_config.py keeps the two equal).
HIDDEN = ["__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~", "*.so", "*.dylib", "*.egg-info", ".pytest_cache"]
# What a learner's copy leaves out: environments, git, node packages, caches, this hub's own files.
NOT_COPIED = (".venv", ".venv-*", ".git", "node_modules", "__pycache__", "*.pyc", ".pytest_cache",
              ".ipynb_checkpoints", ".course-cache", ".course-backups", "*.egg-info", ".hub-runtime")

RUNTIME.mkdir(parents=True, exist_ok=True)
HOMES.mkdir(exist_ok=True)


def _course_kernelspec() -> Path:
    """A kernelspec named python3 that starts the course's python, in a folder the learners'
    servers put first on JUPYTER_PATH. Without it, the single-user server (in .venv-hub) would
    start kernels in its own environment, where FastAPI and the course are not installed."""
    share = RUNTIME / "share" / "jupyter"
    spec = share / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    python = COURSE_VENV / "bin" / "python"
    (spec / "kernel.json").write_text(json.dumps({
        # An absolute path: jupyter_client replaces a bare "python" with its own sys.executable.
        "argv": [str(python), "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }, indent=1))
    return share


def _lab_config() -> Path:
    """JupyterLab's page config for the learners' servers: no "official Jupyter news?" prompt (the
    same plugin `make lab` disables, course/tooling/lab.py DISABLED_PLUGINS)."""
    etc = RUNTIME / "etc" / "jupyter"
    (etc / "labconfig").mkdir(parents=True, exist_ok=True)
    (etc / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}, indent=1))
    return etc


def course_copy(spawner) -> Path:
    return Path(spawner.home_dir) / COURSE_DIR


def give_the_learner_a_copy(spawner) -> None:
    """Before the first start: copy the course into the learner's home (on a real hub nbgitpuller
    or a start hook does this). Later starts keep the learner's work."""
    target = course_copy(spawner)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(COURSE_SOURCE, target, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))


KERNELS = _course_kernelspec()
LAB_CONFIG = _lab_config()

# The hub, the proxy and the hub's API: 127.0.0.1 only.
c.JupyterHub.bind_url = f"http://127.0.0.1:{PORT}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{HUB_PORT}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PROXY_API_PORT}"
c.ConfigurableHTTPProxy.command = [str(PROXY)]
c.ConfigurableHTTPProxy.pid_file = str(RUNTIME / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{RUNTIME / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(RUNTIME / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(RUNTIME / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every learner's server
c.JupyterHub.cleanup_proxy = True

# TEST ONLY: any name, any password. A real workshop uses GitHub OAuth, the FirstUseAuthenticator,
# or (a short workshop) the SharedPasswordAuthenticator: see workshop/README.md.
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.admin_users = {"instructor"}

# A process per learner on this machine, no system users (SimpleLocalProcessSpawner is for tests:
# every server runs as the hub's user). Each learner's home is <runtime>/homes/<name>.
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
c.Spawner.ip = "127.0.0.1"  # each server on a free port of its own (the spawner picks it)
c.Spawner.cmd = [str(HUB_BIN / "jupyterhub-singleuser")]
c.Spawner.notebook_dir = str(HOMES / "{username}" / COURSE_DIR)
c.Spawner.default_url = "/lab/tree/notebooks/00_start_here.ipynb"
c.Spawner.pre_spawn_hook = give_the_learner_a_copy
# Five servers starting at once on two busy cores take longer than the default 30 s / 60 s.
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 180
c.JupyterHub.concurrent_spawn_limit = 20  # the start of a workshop: everyone clicks at once

# Only what is listed here reaches a learner's server: not the hub's PATH, nor its secrets.
c.Spawner.env_keep = ["LANG", "LC_ALL"]
c.Spawner.environment = {
    # The course's environment first: kernels, `!course ...` in a cell, `course` in a terminal.
    "PATH": os.pathsep.join([str(COURSE_VENV / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
    "VIRTUAL_ENV": str(COURSE_VENV),
    # The learner's copy is the course: `import course` and the grader's ROOT come from it, not
    # from the checkout the shared .venv was installed from (its editable install points there).
    "COURSE_ROOT": lambda spawner: str(course_copy(spawner)),
    "PYTHONPATH": lambda spawner: str(course_copy(spawner)),
    "JUPYTER_PATH": str(KERNELS),  # the python3 kernelspec above comes first
    "JUPYTER_CONFIG_PATH": str(LAB_CONFIG),
    **MARKERS,
}
# The same JupyterLab as `make lab` (course/tooling/lab.py lab_command; the test compares them).
c.Spawner.args = [
    "--ServerApp.terminado_settings=" + json.dumps(
        {"shell_command": ["/bin/bash", "--rcfile", str(REPO / "course" / "tooling" / "lab_bashrc.sh"), "-i"]}),
    "--ContentsManager.hide_globs=" + json.dumps(HIDDEN),
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]
if hasattr(os, "geteuid") and os.geteuid() == 0:
    c.Spawner.args.append("--allow-root")  # CI runs as root; Jupyter refuses without it

# The idle culler: a server with no activity for CULL_TIMEOUT seconds is stopped (its learner's
# files stay; the next login starts it again), freeing memory and database connections.
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [str(HUB_BIN / "python"), "-m", "jupyterhub_idle_culler",
                f"--timeout={CULL_TIMEOUT}", f"--cull-every={CULL_EVERY}"],
    "environment": dict(MARKERS),
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]

if os.environ.get("WORKSHOP_ADMIN_TOKEN"):
    c.JupyterHub.services.append({"name": "workshop-admin", "api_token": os.environ["WORKSHOP_ADMIN_TOKEN"]})
    c.JupyterHub.load_roles.append({
        "name": "workshop-admin",
        "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"],
        "services": ["workshop-admin"],
    })
