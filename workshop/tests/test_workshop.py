"""A real workshop on one machine: JupyterHub, the proxy, the idle culler and five learners'
servers. Each learner runs notebook 01 and `course check 01 --target solutions` in their own
server, first one learner alone, then all five at once. Everything must pass with nothing shared
by accident (ports, SQLite files, PostgreSQL databases and roles, temporary folders: /tmp and
/dev/shm ARE shared, as on a real hub), and nothing may be left running afterwards.

The note at the end gives each learner's times against the one learner alone, the memory and
PostgreSQL connections per learner (workshop/README.md's sizing comes from it); the same figures go to
workshop/sizing.json, from which the instructor guide's sizing is made (workshop/INSTRUCTORS.md)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from hubkit import COURSE_VENV, NOTE, Hub

from course.databases import PG_ADMIN
from course.services import services_required
from course.tooling.testkit import run_in_kernel, run_in_terminal

LEARNERS = [f"learner{i}" for i in range(1, 6)]
NOTEBOOK = "notebooks/01_database_lifecycle.ipynb"
JOB_TIMEOUT = 300  # seconds for one notebook run or one grading, even with five at once
# By default each learner runs the notebook and the grader at the same time (a learner grading in a
# terminal while the notebook runs: the heaviest case). WORKSHOP_JOBS=sequential runs the grader
# after the notebook, to tell the two cases apart when something fails.
ONE_AFTER_THE_OTHER = os.environ.get("WORKSHOP_JOBS") == "sequential"

# What a learner's kernel runs: the notebook (as `make test` runs it: nbclient, a fresh kernel) and
# the grader (the `course` command a learner types), each in a subprocess whose output goes to a
# file in the learner's copy; then one line of JSON.
KERNEL_CODE = r'''
import json, os, resource, shutil, subprocess, sys, time
from pathlib import Path

params = json.loads(PARAMS)
root = Path(os.environ["COURSE_ROOT"])
logs = root / ".workshop-logs"
logs.mkdir(exist_ok=True)
env = {**os.environ, **params["env"]}
jobs = {
    "notebook": [sys.executable, "-c",
                 "import sys; from course.tooling.nbtools import execute; print('ran in', execute(sys.argv[1]))",
                 params["notebook"]],
    "check": [shutil.which("course") or "course", "check", "01", "--target", "solutions"],
}
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
cpu_before = cpu()
running, began, result = {}, {}, {"jobs": {}}


def finish(name, proc, timed_out):
    if timed_out:  # the job and everything it started
        import psutil
        for p in psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]:
            p.kill()
    seconds = time.perf_counter() - began[name]
    proc.wait()
    log = logs / f"{params['phase']}-{name}.log"
    result["jobs"][name] = {"returncode": proc.returncode, "seconds": round(seconds, 2), "timed_out": timed_out,
                            "tail": log.read_text(errors="replace")[-2500:]}
    del running[name]


def wait_for(names):
    while any(n in running for n in names):
        for name in [n for n in names if n in running]:
            proc = running[name]
            if proc.poll() is not None:
                finish(name, proc, False)
            elif time.perf_counter() - began[name] > params["timeout"]:
                finish(name, proc, True)
        time.sleep(0.1)


for name, cmd in jobs.items():
    began[name] = time.perf_counter()
    with (logs / f"{params['phase']}-{name}.log").open("w") as out:
        running[name] = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
    if params["one_after_the_other"]:
        wait_for([name])
wait_for(list(jobs))
result["cpu_seconds"] = round(cpu() - cpu_before, 1)
import course, course.manifest
result.update(python=sys.executable, course=course.__file__, root=str(course.manifest.ROOT),
              course_cli=shutil.which("course"), home=os.environ["HOME"])
print("WORKSHOP-RESULT " + json.dumps(result))
'''


def learner_code(phase: str, env: dict[str, str]) -> str:
    params = {"phase": phase, "env": env, "notebook": NOTEBOOK, "timeout": JOB_TIMEOUT,
              "one_after_the_other": ONE_AFTER_THE_OTHER}
    return f"PARAMS = {json.dumps(json.dumps(params))}\n" + KERNEL_CODE


async def run_learner(hub: Hub, user: str, phase: str, env: dict[str, str]) -> dict:
    out = await run_in_kernel(hub.user_url(user), learner_code(phase, env), headers=hub.headers(),
                              timeout=JOB_TIMEOUT + 60, who=user)
    lines = [line for line in out.splitlines() if line.startswith("WORKSHOP-RESULT ")]
    assert lines, f"{user} ({phase}): the kernel printed no result:\n{out[-3000:]}"
    return json.loads(lines[-1].removeprefix("WORKSHOP-RESULT "))


def failures(results: dict[str, dict]) -> list[str]:
    bad = []
    for user, result in results.items():
        for job, r in result["jobs"].items():
            if r["returncode"] != 0:
                why = "timed out" if r["timed_out"] else f"exit code {r['returncode']}"
                bad.append(f"--- {user}: {job} {why} after {r['seconds']:.0f} s:\n{r['tail']}")
    return bad


def postgres_reachable() -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(**PG_ADMIN, timeout=3)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


# The figures the instructor guide's sizing is made from (workshop/INSTRUCTORS.md, `make pages`):
# written by every run, like bench/last.json; commit it from a run on a machine like the hub's.
# WORKSHOP_SIZING=path writes it elsewhere, WORKSHOP_SIZING= (empty) not at all.
SIZING = os.environ.get("WORKSHOP_SIZING", str(Path(__file__).resolve().parents[1] / "sizing.json"))


def postgres_settings() -> dict[str, int]:
    import asyncpg

    async def query() -> dict[str, int]:
        try:
            conn = await asyncpg.connect(**PG_ADMIN, timeout=3)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
            return {}
        try:
            return {name: int(await conn.fetchval(f"SHOW {name}"))
                    for name in ("max_connections", "superuser_reserved_connections")}
        finally:
            await conn.close()

    return asyncio.run(query())


def record_sizing(hub: Hub, alone: dict, together: dict, *, spawn_seconds: float, postgres_ran: bool,
                  load_before: float) -> None:
    """Memory and PostgreSQL connections per learner, and the times, as JSON (see SIZING)."""
    if not SIZING:
        return
    import datetime as dt

    import psutil

    s = hub.sampler

    def jobs(result: dict) -> dict:
        return {job: {"seconds": v["seconds"], "passed": v["returncode"] == 0} for job, v in result["jobs"].items()}

    data = {
        "date": dt.date.today().isoformat(),
        "machine": {"cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30),
                    "load_before": round(load_before, 1)},
        "notebook": NOTEBOOK, "jobs_at_once": not ONE_AFTER_THE_OTHER, "postgres_sections_ran": postgres_ran,
        "servers_ready_seconds": round(spawn_seconds, 1),
        "alone": {"jobs": jobs(alone["learner1"]), "cpu_seconds": alone["learner1"]["cpu_seconds"]},
        "together": {user: {"jobs": jobs(r), "cpu_seconds": r["cpu_seconds"]} for user, r in together.items()},
        "peak_pss_mib": {user: round(s.rss_peak[user]) for user in LEARNERS},
        "hub_pss_mib": round(s.rss_peak["hub"]),
        "peak_postgres_connections": {user: s.pg_peak[user] for user in LEARNERS},
        "postgres_connections_all_learners_peak": s.pg_learners_peak,
        "postgres_connections_server_peak": s.pg_server_peak,
        "postgres": postgres_settings(),
        "passed": not failures(alone) and not failures(together),
    }
    Path(SIZING).write_text(json.dumps(data, indent=1) + "\n")
    NOTE.append(f"sizing figures written to {SIZING} (workshop/INSTRUCTORS.md is made from it: make pages)")


@pytest.mark.timeout(180)
def test_idle_culler_stops_an_idle_server(hub_factory) -> None:
    """The culler service, with a short timeout, stops a server nobody uses; the learner stays."""
    hub = hub_factory(WORKSHOP_CULL_TIMEOUT="5", WORKSHOP_CULL_EVERY="2")
    hub.add_users(["idle"])
    hub.start_servers(["idle"])
    started = time.monotonic()
    while hub.server("idle") is not None:
        assert time.monotonic() - started < 90, f"the idle server was not culled in 90 s:\n{hub.log_tail()}"
        time.sleep(1)
    culled_after = time.monotonic() - started
    assert "Culling server idle" in hub.log_path.read_text(errors="replace"), hub.log_tail()
    assert hub.api("GET", "/users/idle").status_code == 200, "the culler must stop servers, not remove learners"
    NOTE.append(f"idle culler (timeout 5 s, every 2 s): stopped the idle server {culled_after:.0f} s after it was ready")


@pytest.mark.timeout(900)
def test_five_learners_at_once(hub_factory) -> None:
    load_before = os.getloadavg()[0]
    hub_started = time.perf_counter()
    hub = hub_factory()
    hub_ready = time.perf_counter() - hub_started
    hub.add_users(LEARNERS)
    spawn_seconds = hub.start_servers(LEARNERS)

    # Each learner's server: the course's Lab, the course's python, their own copy.
    page = httpx.get(f"{hub.user_url('learner1')}/lab", headers=hub.headers(), timeout=30)
    assert page.status_code == 200 and "JupyterLab" in page.text, (page.status_code, page.text[:300])
    assert '"@jupyterlab/apputils-extension:announcements"' in page.text
    copy = hub.course_copy("learner2")
    terminal = asyncio.run(run_in_terminal(
        hub.user_url("learner2"),
        "command -v course; python -c 'import course; print(course.__file__)'; pwd; echo DONE-$((40+2))", "DONE-42",
        headers=hub.headers(), who="learner2"))
    assert str(COURSE_VENV / "bin" / "course") in terminal, f"a terminal does not find the course's `course`:\n{terminal[-800:]}"
    assert str(copy / "course" / "__init__.py") in terminal, f"a terminal imports another copy of the course:\n{terminal[-800:]}"

    # CI requires the sections that need a server; here too whenever PostgreSQL answers, so that the
    # learners' databases and roles are part of what must not collide.
    require = "1" if services_required() or postgres_reachable() else "0"
    env = {"COURSE_RUN_ID": hub.run_id, "COURSE_REQUIRE_SERVICES": require}

    # A failure alone is reported with the rest at the end: the five-at-once run still tells whether
    # the hub adds failures of its own, and the note is written either way.
    alone = {"learner1": asyncio.run(run_learner(hub, "learner1", "alone", env))}

    async def everyone() -> dict[str, dict]:
        results = await asyncio.gather(*(run_learner(hub, user, "together", env) for user in LEARNERS))
        return dict(zip(LEARNERS, results))

    together = asyncio.run(everyone())

    # The note: each learner against the one alone.
    base = alone["learner1"]["jobs"]
    NOTE.append(f"hub ready in {hub_ready:.1f} s; 5 servers started at once, all ready in {spawn_seconds:.1f} s; "
                f"PostgreSQL sections {'ran' if require == '1' else 'SKIPPED (no server)'}; each learner ran the "
                f"notebook and the grader {'one after the other' if ONE_AFTER_THE_OTHER else 'at the same time'}")
    NOTE.append(f"{'':10} {'notebook 01':>22} {'course check 01':>22} {'CPU (both)':>11}")
    NOTE.append(f"{'alone':10} {base['notebook']['seconds']:>9.1f} s {'':11} {base['check']['seconds']:>9.1f} s {'':11} "
                f"{alone['learner1']['cpu_seconds']:>9.1f} s" + ("  FAILED" if failures(alone) else ""))
    for user, result in together.items():
        nb, ck = result["jobs"]["notebook"], result["jobs"]["check"]
        NOTE.append(f"{user:10} {nb['seconds']:>9.1f} s ({nb['seconds'] / base['notebook']['seconds']:4.1f}x alone) "
                    f"{ck['seconds']:>9.1f} s ({ck['seconds'] / base['check']['seconds']:4.1f}x alone) "
                    f"{result['cpu_seconds']:>9.1f} s" + ("" if nb["returncode"] == 0 and ck["returncode"] == 0 else "  FAILED"))
    s = hub.sampler
    NOTE.append("peak memory per learner (PSS summed over the server, kernels and all they start, sampled 1/s): "
                + ", ".join(f"{u} {s.rss_peak[u]:.0f} MiB" for u in LEARNERS) + f"; hub+proxy+culler {s.rss_peak['hub']:.0f} MiB")
    NOTE.append("peak PostgreSQL connections per learner (sampled 1/s): "
                + ", ".join(f"{u} {s.pg_peak[u]}" for u in LEARNERS)
                + f"; all learners at one sample {s.pg_learners_peak}; the server's peak from everyone {s.pg_server_peak}")

    record_sizing(hub, alone, together, spawn_seconds=spawn_seconds, postgres_ran=require == "1",
                  load_before=load_before)

    # Nothing shared by accident: each learner's kernel ran the course's python, imported the course
    # from the learner's own copy.
    for user, result in {**together, "learner1 (alone)": alone["learner1"]}.items():
        name = user.split()[0]
        copy = hub.course_copy(name)
        assert result["python"] == str(COURSE_VENV / "bin" / "python"), (user, result["python"])
        assert result["course_cli"] == str(COURSE_VENV / "bin" / "course"), (user, result["course_cli"])
        assert Path(result["course"]) == copy / "course" / "__init__.py", (user, result["course"])
        assert Path(result["root"]) == copy and Path(result["home"]) == hub.home(name), (user, result)
    for user in LEARNERS:  # and the grader's own processes ran that learner's copy of the checks
        ran = hub.sampler.checks_run[user]
        assert ran, f"{user}: no grader process was seen"
        elsewhere = [f for f in ran if not f.startswith(str(hub.course_copy(user)) + "/")]
        assert not elsewhere, f"{user}'s grader ran checks outside their copy: {elsewhere}"

    failed = [f"=== one learner alone:\n{f}" for f in failures(alone)] + \
             [f"=== five learners at once:\n{f}" for f in failures(together)]
    if failed:
        pytest.fail("\n".join(failed), pytrace=False)

    # The leftover checks (processes, listeners, PostgreSQL databases and roles) run when the
    # fixture stops the hub, also after a failure.
