"""The workshop configuration itself, without starting a hub: it serves the same JupyterLab as
`make lab`, binds 127.0.0.1 only, gives each learner their own copy of the course and the course's
environment, runs the idle culler, and its pins agree with the course's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from course.tooling import lab

WORKSHOP = Path(__file__).resolve().parents[1]
REPO = WORKSHOP.parent
CONFIG = WORKSHOP / "jupyterhub_config.py"


@pytest.fixture
def config(tmp_path, monkeypatch) -> SimpleNamespace:
    """The config file executed as JupyterHub executes it (traitlets' loader: `c` and __file__)."""
    for var in ("WORKSHOP_PORT", "WORKSHOP_HUB_PORT", "WORKSHOP_PROXY_API_PORT", "WORKSHOP_ADMIN_TOKEN",
                "WORKSHOP_CULL_TIMEOUT", "WORKSHOP_CULL_EVERY", "WORKSHOP_COURSE_SOURCE", "WORKSHOP_COURSE_VENV",
                "COURSE_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORKSHOP_RUNTIME_DIR", str(tmp_path / "runtime"))
    c = Config()
    namespace = {"get_config": lambda: c, "__file__": str(CONFIG), "__name__": "jupyterhub_config"}
    exec(compile(CONFIG.read_text(), str(CONFIG), "exec"), namespace)
    return SimpleNamespace(c=c, ns=namespace, runtime=tmp_path / "runtime")


def _spawner(config, name="ada"):
    home = config.runtime / "homes" / name
    return SimpleNamespace(home_dir=str(home), user=SimpleNamespace(name=name))


def test_same_lab_as_make_lab(config) -> None:
    """The learners' Lab has `make lab`'s settings: hidden files, no news, no update check, the
    terminal's rc file, and the announcements plugin disabled."""
    wanted = [a for a in lab.lab_command(open_browser=False) if a.startswith((
        "--ContentsManager.hide_globs=", "--LabApp.news_url=", "--LabApp.check_for_updates_class=",
        "--ServerApp.terminado_settings="))]
    assert len(wanted) == 4, wanted
    for arg in wanted:
        assert arg in config.c.Spawner.args, f"make lab passes {arg}; the hub's servers do not"
    page = json.loads((config.runtime / "etc" / "jupyter" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == lab.DISABLED_PLUGINS


def test_binds_localhost_only(config) -> None:
    c = config.c
    for url in (c.JupyterHub.bind_url, c.JupyterHub.hub_bind_url, c.ConfigurableHTTPProxy.api_url):
        assert url.startswith("http://127.0.0.1:"), url
    assert c.Spawner.ip == "127.0.0.1"
    assert Path(c.ConfigurableHTTPProxy.command[0]) == WORKSHOP / "node_modules" / ".bin" / "configurable-http-proxy"
    runtime = str(config.runtime.resolve())
    for path in (c.JupyterHub.db_url.removeprefix("sqlite:///"), c.JupyterHub.cookie_secret_file,
                 c.JupyterHub.pid_file, c.ConfigurableHTTPProxy.pid_file):
        assert path.startswith(runtime), f"{path} is outside the hub's runtime folder"


def test_learner_runs_the_course_environment_on_their_own_copy(config) -> None:
    """Kernels start the course's python; PATH, COURSE_ROOT and PYTHONPATH point at the course's
    .venv and at the learner's own copy; nothing else of the hub's environment is passed on."""
    c, spawner = config.c, _spawner(config)
    env = {k: (v(spawner) if callable(v) else v) for k, v in c.Spawner.environment.items()}
    copy = Path(spawner.home_dir) / "fastapi-in-production"
    assert env["COURSE_ROOT"] == env["PYTHONPATH"] == str(copy)
    assert env["PATH"].split(":")[0] == str(REPO / ".venv" / "bin")
    assert "PATH" not in c.Spawner.env_keep and "PYTHONPATH" not in c.Spawner.env_keep
    spec = json.loads((Path(env["JUPYTER_PATH"]) / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == str(REPO / ".venv" / "bin" / "python"), spec["argv"]
    assert Path(spec["argv"][0]).exists()


def test_each_learner_gets_a_copy_of_the_working_tree(config) -> None:
    """The copy is the working tree as it is now (uncommitted changes included), without
    environments, git, node packages or caches; a second start keeps the learner's work."""
    spawner = _spawner(config)
    config.c.Spawner.pre_spawn_hook(spawner)
    copy = Path(spawner.home_dir) / "fastapi-in-production"
    for rel in ("modules.yml", "notebooks/01_database_lifecycle.ipynb", "course/__init__.py", "solutions"):
        assert (copy / rel).exists(), rel
    nb = "notebooks/01_database_lifecycle.ipynb"
    assert (copy / nb).read_bytes() == (REPO / nb).read_bytes()
    for name in (".venv", ".venv-hub", ".venv-test", ".git", "node_modules", ".course-cache"):
        assert not list(copy.rglob(name)), f"{name} was copied"
    (copy / "modules.yml").write_text("the learner's edit")
    config.c.Spawner.pre_spawn_hook(spawner)
    assert (copy / "modules.yml").read_text() == "the learner's edit"


def test_idle_culler_is_a_service_with_only_the_scopes_it_needs(config) -> None:
    c = config.c
    (culler,) = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"]
    assert "--timeout=3600" in culler["command"]
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler"]
    assert sorted(role["scopes"]) == sorted(["list:users", "read:users:activity", "read:servers", "delete:servers"])
    assert not [s for s in c.JupyterHub.services if s["name"] == "workshop-admin"], "no admin token unless asked"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version.strip()
    return pins


def test_hub_pins_agree_with_the_course() -> None:
    """Learners see the course's JupyterLab, and every package the hub shares with the course has
    the course's version."""
    hub = _pins(WORKSHOP / "requirements-hub.txt")
    course = {**_pins(REPO / "requirements-lock.txt"), **_pins(REPO / "requirements.txt")}
    assert {"jupyterhub", "jupyterhub-idle-culler", "jupyterlab"} <= hub.keys()
    assert hub["jupyterlab"] == course["jupyterlab"]
    differ = {name: (hub[name], course[name]) for name in hub.keys() & course.keys() if hub[name] != course[name]}
    assert not differ, f"hub pin vs course pin: {differ}"


def test_proxy_lock_matches_package_json() -> None:
    wanted = json.loads((WORKSHOP / "package.json").read_text())["dependencies"]["configurable-http-proxy"]
    lock = json.loads((WORKSHOP / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"]["configurable-http-proxy"] == wanted
    assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == wanted
