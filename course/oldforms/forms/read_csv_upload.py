"""Probe of read_csv_upload.yml: runs the old form, prints one JSON line."""

from probekit import emit

import socket, threading, time
import httpx, uvicorn
from fastapi import FastAPI, HTTPException, Request, UploadFile
app = FastAPI()
seen, sent = {}, {}
first_chunk = threading.Event()
@app.post("/upload-csv")
async def upload_csv(file: UploadFile):
    seen["endpoint_started"] = time.monotonic()
    seen["size"] = file.size
    seen["rolled_to_disk"] = file.file._rolled      # SpooledTemporaryFile's own flag
    seen["type"] = type(file.file).__name__
    return {}
@app.post("/stream")
async def stream(request: Request):
    async for chunk in request.stream():
        first_chunk.set()
    return {}
MAX_BYTES = 1024 * 1024
@app.post("/limited")                           # today's form, with a 1 MiB limit
async def limited(request: Request):
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_BYTES:
            raise HTTPException(status_code=413, detail="upload too large")
    return {"bytes": received}
CHUNK, CHUNKS, BOUNDARY = 1024 * 1024, 5, "oldformsboundary"
def multipart():
    yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
           "Content-Type: text/csv\r\n\r\n").encode()
    for _ in range(CHUNKS):
        time.sleep(0.02)
        yield b"x" * CHUNK
    sent["last_chunk"] = time.monotonic()       # the closing boundary goes after this
    yield f"\r\n--{BOUNDARY}--\r\n".encode()
def raw():
    yield b"x" * CHUNK
    sent["stream_seen_early"] = first_chunk.wait(5)  # the endpoint has bytes before the rest is sent
    for _ in range(CHUNKS - 1):
        yield b"x" * CHUNK
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
try:
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        upload = client.post("/upload-csv", content=multipart(),
                             headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
        streamed = client.post("/stream", content=raw())
        today_limit = [client.post("/limited", content=b"x" * CHUNK * CHUNKS).status_code,
                       client.post("/limited", content=b"x" * 1000).status_code]
finally:
    server.should_exit = True
    thread.join(5)
import io
import pandas as pd
whole = pd.read_csv(io.BytesIO(b"id,amount\n" + b"".join(b"%d,1\n" % i for i in range(1000))))
emit(status=[upload.status_code, streamed.status_code], size=seen["size"], type=seen["type"],
     rolled_to_disk=seen["rolled_to_disk"],
     endpoint_started_after_last_byte=seen["endpoint_started"] > sent["last_chunk"],
     today_sees_bytes_while_uploading=sent["stream_seen_early"], today_limit=today_limit,
     read_csv_returns=[type(whole).__name__, len(whole)])
