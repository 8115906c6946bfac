"""Probe of celery_worker_dash_a.yml: runs the old form, prints one JSON line."""

import subprocess
import sys

from probekit import emit

done = subprocess.run([sys.executable, "-m", "celery", "worker", "-A", "tasks"],
                      capture_output=True, text=True, timeout=30)
emit(returncode=done.returncode, message=" ".join(done.stderr.split()),
     celery_message=" ".join(done.stderr.split()))
