"""FastAPI's BackgroundTasks: the work runs in the web server's process, after the response.

Every step is written to WORK_LOG (a text file, one line per event), so the notebook can see what
ran, and what never did, even when the server process is gone.
"""

import os
import time

from fastapi import BackgroundTasks, FastAPI, Query

app = FastAPI()


def log(event: str) -> None:
    with open(os.environ["WORK_LOG"], "a") as f:
        f.write(f"{time.time():.3f} {event}\n")


def render_sizes(photo_id: str, seconds: float) -> None:
    log(f"start {photo_id}")
    time.sleep(seconds)  # thumbnail, web and print sizes: slow, and the client should not wait
    log(f"done {photo_id}")


def notify_followers(photo_id: str) -> None:
    log(f"start {photo_id}")
    raise ConnectionError("the push service refused the connection")


@app.post("/photos/{photo_id}/sizes")
def sizes(photo_id: str, background: BackgroundTasks, seconds: float = Query(1.0, ge=0, le=5)):
    background.add_task(render_sizes, photo_id, seconds)
    return {"photo_id": photo_id, "sizes": "on their way"}


@app.post("/photos/{photo_id}/published")
def published(photo_id: str, background: BackgroundTasks):
    background.add_task(render_sizes, f"{photo_id}-sizes", 0.05)
    background.add_task(notify_followers, f"{photo_id}-followers")
    background.add_task(render_sizes, f"{photo_id}-search-index", 0.05)
    return {"photo_id": photo_id, "status": "published"}
