"""Process the request body as it arrives: `request.stream()`, no multipart, no spooled file.

    uvicorn raw_stream:app      # POST the CSV itself as the body (Content-Type: text/csv)
"""

import codecs
import csv

from fastapi import FastAPI, HTTPException, Request

app = FastAPI()


@app.post("/import")
async def import_readings(request: Request) -> dict:
    decoder = codecs.getincrementaldecoder("utf-8")()  # keeps a character split between chunks
    pending = ""  # the end of the last chunk: a line that is not complete yet
    rows = total_wh = 0
    header_seen = False
    try:
        async for chunk in request.stream():  # each chunk as it arrives from the socket
            lines = (pending + decoder.decode(chunk)).split("\n")
            pending = lines.pop()
            for meter, read_at, wh, note in csv.reader(lines):  # (no newline inside a quoted field)
                if header_seen:
                    rows += 1
                    total_wh += int(wh)
                header_seen = True
        last = pending + decoder.decode(b"", final=True)
        if last:  # a last line without a newline
            meter, read_at, wh, note = next(csv.reader([last]))
            rows += 1
            total_wh += int(wh)
    except (ValueError, csv.Error) as exc:  # a bad row, or bytes that are not UTF-8
        # the header is line 1, the first row line 2
        raise HTTPException(status_code=422, detail=f"line {rows + 2}: {exc}") from None
    return {"rows": rows, "total_wh": total_wh}
