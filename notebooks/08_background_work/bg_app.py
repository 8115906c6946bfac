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


def send_receipt(order_id: str, seconds: float) -> None:
    log(f"start {order_id}")
    time.sleep(seconds)  # render and send: slow, and the client should not wait for it
    log(f"done {order_id}")


def notify_warehouse(order_id: str) -> None:
    log(f"start {order_id}")
    raise ConnectionError("the warehouse API refused the connection")


@app.post("/orders/{order_id}/receipt")
def receipt(order_id: str, background: BackgroundTasks, seconds: float = Query(1.0, ge=0, le=5)):
    background.add_task(send_receipt, order_id, seconds)
    return {"order_id": order_id, "receipt": "on its way"}


@app.post("/orders/{order_id}/paid")
def paid(order_id: str, background: BackgroundTasks):
    background.add_task(send_receipt, f"{order_id}-receipt", 0.05)
    background.add_task(notify_warehouse, f"{order_id}-warehouse")
    background.add_task(send_receipt, f"{order_id}-loyalty-points", 0.05)
    return {"order_id": order_id, "status": "paid"}
