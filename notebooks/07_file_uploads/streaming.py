"""Read the spooled upload row by row: `csv.reader(io.TextIOWrapper(file.file))`.

    uvicorn streaming:app
"""

import csv
import io

from fastapi import FastAPI, HTTPException, UploadFile

app = FastAPI()


@app.post("/import")
async def import_readings(file: UploadFile) -> dict:
    # A text view of the spooled file: it reads a few KiB at a time, as the rows are asked for.
    text = io.TextIOWrapper(file.file, encoding="utf-8", newline="")
    reader = csv.reader(text)
    rows = total_wh = 0
    try:
        next(reader, None)  # the header
        for meter, read_at, wh, note in reader:  # no await in this loop: the event loop waits
            rows += 1
            total_wh += int(wh)
    except (ValueError, csv.Error) as exc:  # a bad row, or bytes that are not UTF-8
        raise HTTPException(status_code=422, detail=f"line {reader.line_num}: {exc}") from None
    finally:
        text.detach()  # leave file.file open: FastAPI closes the upload after the response
    return {"rows": rows, "total_wh": total_wh}
