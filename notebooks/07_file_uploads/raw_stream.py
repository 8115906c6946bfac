"""Process the request body as it arrives: `request.stream()`, no multipart, no spooled file.

    uvicorn raw_stream:app      # POST the CSV itself as the body (Content-Type: text/csv)
"""

import codecs
import csv

from fastapi import FastAPI, HTTPException, Request

app = FastAPI()


@app.post("/import")
async def import_products(request: Request) -> dict:
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""  # the end of the last chunk: a line that is not complete yet
    rows = total_cents = 0
    header_seen = False
    try:
        async for chunk in request.stream():  # each chunk as it arrives from the socket
            lines = (pending + decoder.decode(chunk)).split("\n")
            pending = lines.pop()
            for sku, name, price_cents, description in csv.reader(lines):  # (no newlines inside quoted fields)
                if header_seen:
                    rows += 1
                    total_cents += int(price_cents)
                header_seen = True
        last = pending + decoder.decode(b"", final=True)
        if last:  # a last line without a newline
            sku, name, price_cents, description = next(csv.reader([last]))
            rows += 1
            total_cents += int(price_cents)
    except (ValueError, csv.Error) as exc:  # a bad row, or bytes that are not UTF-8: the client's error
        raise HTTPException(status_code=422, detail=f"row {rows + 1}: {exc}") from None
    return {"rows": rows, "total_cents": total_cents}
