"""The app named by ``COURSE_LAGGED_APP`` ("module:attribute"), under a lag probe on this process's
event loop whose samples are at ``GET /__course_lag__`` (course.blocking.SAMPLES_PATH).

    COURSE_LAGGED_APP=streaming:app python -m uvicorn course.lagged:app --app-dir DIR

Started by course.blocking.serve_lagged (notebooks 06 and 07): the app runs in a process of its
own, as in production, and the notebook still sees how late its loop was.
"""

import importlib
import os

from course.blocking import SAMPLES_PATH, LagProbe

_module, _, _name = os.environ["COURSE_LAGGED_APP"].partition(":")
app = LagProbe(getattr(importlib.import_module(_module), _name or "app"), route=SAMPLES_PATH)
