"""A library with no async version: a vendor's reporting SDK, say, or a C extension.

``legacy_report`` blocks the calling thread for ``REPORT_SECONDS`` (0.2 s) and returns a report.
You cannot change it; you can only decide which thread calls it.
"""

import time

REPORT_SECONDS = 0.2


def legacy_report(user_id: int) -> dict:
    time.sleep(REPORT_SECONDS)  # the SDK waits on its own socket, without asyncio
    return {"user_id": user_id, "report": f"report for user {user_id}"}
