"""Helpers for the FastAPI in Production course: real servers, real load, real counters.

    from course import serve_in_thread, serve_subprocess, fire, pool_status, check, probe
"""

from course.demo import challenge, import_file, reveal, show
from course.load import LoadResult, fire
from course.probes import ConnectionCounter, MemorySampler, open_file_count, open_files, peak_rss_mib, pool_status, tcp_connections
from course.server import serve_in_thread, serve_subprocess



def check(module: str, target: str | None = None, verbose: bool = False) -> bool:
    """Grade an exercise from a notebook cell: ``course.check("01")`` prints the report."""
    from course.grading.grader import check as _check

    return _check(module, target, verbose)


def probe(target: str, **options):
    """Point the course's instruments at any FastAPI app: ``course.probe("main:app", app_dir=...,
    env={...}, allow_writes=False)`` returns the report (a cell shows its table). See course.probing."""
    from course.probing import probe as _probe

    return _probe(target, **options)


__all__ = [
    "check", "probe", "show", "import_file", "reveal", "challenge", "fire", "LoadResult", "serve_in_thread", "serve_subprocess", "pool_status", "ConnectionCounter",
    "open_files", "open_file_count", "tcp_connections", "peak_rss_mib", "MemorySampler",
]
