"""Why a server's peak memory is read from /proc/<pid>/status (VmHWM), not from `ru_maxrss`.

This process touches 300 MiB once and frees it, then starts a small Python child (as
subprocess.Popen, and so `serve_subprocess`, start uvicorn) that allocates almost nothing. The
child reports its own `ru_maxrss` and its VmHWM.

    python forked_maxrss.py
"""

import json
import subprocess
import sys

CHILD = """
import json, resource
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
print(json.dumps({"ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "vm_hwm_mib": hwm}))
"""


def vm_hwm_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


block = bytearray(300 * 2**20)  # zero pages are not resident yet: touch one byte per page
for i in range(0, len(block), 4096):
    block[i] = 1
del block  # freed: this process's peak stays, its current memory goes back down

child = json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout)
print(json.dumps({"parent_vm_hwm_mib": round(vm_hwm_mib(), 1), "child": child}))
