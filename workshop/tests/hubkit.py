"""The workshop tests' harness: a real JupyterHub started from .venv-hub with workshop/jupyterhub_config.py
on 127.0.0.1 and free ports, in a temporary folder, driven through its REST API with an admin
service token, and stopped with everything it started, also when a test fails.

Every process of a run carries COURSE_RUN_ID=<run id> in its environment (the hub passes it on to
the proxy, the culler, each learner's server, their kernels and everything those start), so the
clean-up check looks only at what this run created: other people's processes on a shared machine,
and other runs, are not ours to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import psutil

from course.databases import PG_ADMIN
from course.probes import processes_with_env

WORKSHOP = Path(__file__).resolve().parents[1]
REPO = WORKSHOP.parent
CONFIG = WORKSHOP / "jupyterhub_config.py"
HUB_VENV = REPO / ".venv-hub"
PROXY_BIN = WORKSHOP / "node_modules" / ".bin"
COURSE_VENV = REPO / ".venv"
PG_PORT = PG_ADMIN["port"]

# Lines for the note printed at the end of the run (pytest's terminal summary).
NOTE: list[str] = []


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{p.pid}: {' '.join(p.cmdline())[:160]}")
    return out


class Sampler(threading.Thread):
    """Once a second: memory (PSS) of each learner's processes (a learner = JUPYTERHUB_USER in the
    environment: the server, its kernels and all they start), their connections to PostgreSQL,
    the PostgreSQL server's connections from everyone, the listening sockets of this run's
    processes, the pids of its kernels (for the PostgreSQL leftover check), and which grader files
    (checks/...py) each learner's processes ran."""

    def __init__(self, run_id: str, interval: float = 1.0) -> None:
        super().__init__(name="workshop-sampler", daemon=True)
        self.run_id, self.interval = run_id, interval
        self.stopped = threading.Event()
        self.rss_peak: dict[str, float] = defaultdict(float)  # MiB, sum of PSS
        self.pg_peak: dict[str, int] = defaultdict(int)
        self.pg_learners_peak = 0  # all learners together, at one sample
        self.pg_server_peak = 0  # every client of the server (other people's too)
        self.kernel_pids: set[int] = set()
        self.checks_run: dict[str, set[str]] = defaultdict(set)  # learner -> grader files their processes ran
        self.listeners: set[tuple[str, int]] = set()

    def sample(self) -> None:
        owner: dict[int, str] = {}
        rss: dict[str, float] = defaultdict(float)
        for proc in psutil.process_iter():
            try:
                env = proc.environ()
                if env.get("COURSE_RUN_ID") != self.run_id:
                    continue
                who = env.get("JUPYTERHUB_USER") or "hub"
                owner[proc.pid] = who
                rss[who] += proc.memory_full_info().pss / 2**20  # shared pages split between sharers
                cmdline = proc.cmdline()
                if "ipykernel_launcher" in " ".join(cmdline):
                    self.kernel_pids.add(proc.pid)
                self.checks_run[who].update(a for a in cmdline if "/checks/" in a and a.endswith(".py"))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        for who, mib in rss.items():
            self.rss_peak[who] = max(self.rss_peak[who], mib)
        pg: dict[str, int] = defaultdict(int)
        server = 0
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.pid in owner:
                self.listeners.add((conn.laddr.ip, conn.laddr.port))
            if conn.status != psutil.CONN_ESTABLISHED:
                continue
            if conn.laddr and conn.laddr.port == PG_PORT:
                server += 1
            if conn.raddr and conn.raddr.port == PG_PORT and conn.pid in owner:
                pg[owner[conn.pid]] += 1
        for who, n in pg.items():
            self.pg_peak[who] = max(self.pg_peak[who], n)
        self.pg_learners_peak = max(self.pg_learners_peak, sum(n for who, n in pg.items() if who != "hub"))
        self.pg_server_peak = max(self.pg_server_peak, server)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            with contextlib.suppress(Exception):  # a process vanishing mid-sample is normal
                self.sample()

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


class Hub:
    """One JupyterHub, started by `start()` and stopped, with everything it started, by `stop()`."""

    def __init__(self, **settings: str) -> None:
        self.run_id = uuid.uuid4().hex
        self.runtime = Path(tempfile.mkdtemp(prefix="course-hub-"))
        self.port, self.hub_port, self.api_port = free_ports(3)
        self.token = secrets.token_hex(32)
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.log_path = self.runtime / "hub.log"
        self.proc: subprocess.Popen | None = None
        self.users: list[str] = []
        self.leftovers: list[str] = []
        self.leftover_listeners: list[str] = []
        self.stopped = False
        self.sampler = Sampler(self.run_id)

    # -- the hub ---------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "COURSE_RUN_ID", "WORKSHOP_"))}
        env.update({
            "PATH": os.pathsep.join([str(HUB_VENV / "bin"), str(PROXY_BIN), env.get("PATH", "")]),
            "WORKSHOP_RUNTIME_DIR": str(self.runtime),
            "WORKSHOP_PORT": str(self.port),
            "WORKSHOP_HUB_PORT": str(self.hub_port),
            "WORKSHOP_PROXY_API_PORT": str(self.api_port),
            "WORKSHOP_ADMIN_TOKEN": self.token,
            "WORKSHOP_COURSE_VENV": str(COURSE_VENV),
            # Another tree to give the learners (a maintainer trying a change): the working tree by default.
            "WORKSHOP_COURSE_SOURCE": os.environ.get("WORKSHOP_COURSE_SOURCE") or str(REPO),
            "COURSE_RUN_ID": self.run_id,
            **self.settings,
        })
        env.pop("VIRTUAL_ENV", None)
        return env

    def start(self, timeout: float = 90) -> float:
        missing = [p for p in (HUB_VENV / "bin" / "jupyterhub", PROXY_BIN / "configurable-http-proxy") if not p.exists()]
        assert not missing, f"{missing} not installed: run `make hub-tools`"
        started = time.perf_counter()
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen([str(HUB_VENV / "bin" / "jupyterhub"), "-f", str(CONFIG)], cwd=self.runtime,
                                         env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.sampler.start()
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"the hub exited ({self.proc.returncode}):\n{self.log_tail()}"
            with contextlib.suppress(httpx.TransportError):
                if self.api("GET", "/").status_code == 200:
                    return time.perf_counter() - started
            assert time.monotonic() < deadline, f"the hub did not answer within {timeout:.0f} s:\n{self.log_tail()}"
            time.sleep(0.3)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no hub log)"

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"},
                             timeout=kwargs.pop("timeout", 30), **kwargs)

    # -- learners --------------------------------------------------------------------------------
    def add_users(self, names: list[str]) -> None:
        r = self.api("POST", "/users", json={"usernames": names, "admin": False})
        assert r.status_code == 201, r.text
        self.users += names

    def server(self, name: str) -> dict | None:
        r = self.api("GET", f"/users/{name}")
        assert r.status_code == 200, r.text
        return r.json().get("servers", {}).get("")

    def start_servers(self, names: list[str], timeout: float = 180) -> float:
        """Ask for every server at once (as a room of learners does), wait until all are ready."""
        started = time.perf_counter()
        for name in names:
            r = self.api("POST", f"/users/{name}/server")
            assert r.status_code in (201, 202), f"{name}: {r.status_code} {r.text}"
        deadline = time.monotonic() + timeout
        waiting = set(names)
        while waiting:
            for name in sorted(waiting):
                server = self.server(name)
                if server and server.get("ready"):
                    waiting.discard(name)
            assert time.monotonic() < deadline, f"servers not ready within {timeout:.0f} s: {sorted(waiting)}\n{self.log_tail()}"
            time.sleep(0.5)
        return time.perf_counter() - started

    def user_url(self, name: str) -> str:
        return f"{self.url}/user/{name}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def home(self, name: str) -> Path:
        return self.runtime / "homes" / name

    def course_copy(self, name: str) -> Path:
        return self.home(name) / "fastapi-in-production"

    # -- stopping ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the learners' servers through the API, then the hub (which stops the proxy and the
        culler); then anything of this run still alive is listed in `leftovers` and killed.
        Stopping twice does nothing the second time."""
        if self.stopped:
            return
        self.stopped = True
        try:
            if self.proc is not None and self.proc.poll() is None:
                for name in self.users:
                    with contextlib.suppress(httpx.HTTPError):
                        self.api("DELETE", f"/users/{name}/server", timeout=60)
                deadline = time.monotonic() + 60
                for name in self.users:
                    with contextlib.suppress(httpx.HTTPError, AssertionError):
                        while self.server(name) and time.monotonic() < deadline:
                            time.sleep(0.3)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self.sampler.stop()
            deadline = time.monotonic() + 10
            while (alive := processes_with_env("COURSE_RUN_ID", self.run_id)) and time.monotonic() < deadline:
                time.sleep(0.3)
            self.leftovers = describe(alive)
            pids = {p.pid for p in alive}
            self.leftover_listeners = sorted({f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections("tcp")
                                              if c.status == psutil.CONN_LISTEN and c.pid in pids})
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(alive, timeout=5)

    def remove_files(self) -> None:
        shutil.rmtree(self.runtime, ignore_errors=True)


def postgres_leftovers(run_id: str) -> list[str]:
    """Databases and roles still on the server that this run's kernels created: pg_sandbox tags them
    with the run's COURSE_RUN_ID (course.databases.pg_tagged)."""
    import asyncpg

    from course.databases import pg_tagged

    async def query() -> list[str]:
        try:
            return await pg_tagged(run_id)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
            return []  # no server: the notebooks skipped their PostgreSQL sections (or failed saying so)

    return asyncio.run(query())
