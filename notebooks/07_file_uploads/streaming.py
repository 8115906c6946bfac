"""Read the spooled upload row by row: `csv.reader(io.TextIOWrapper(file.file))`.

    uvicorn streaming:app
"""

import csv
import io

from fastapi import FastAPI, HTTPException, UploadFile

app = FastAPI()


@app.post("/import")
async def import_products(file: UploadFile) -> dict:
    # A text view of the spooled file: it reads a few KiB at a time, as the rows are asked for.
    text = io.TextIOWrapper(file.file, encoding="utf-8", newline="")
    reader = csv.reader(text)
    rows = total_cents = 0
    try:
        next(reader, None)  # the header
        for sku, name, price_cents, description in reader:
            rows += 1
            total_cents += int(price_cents)
    except (ValueError, csv.Error) as exc:  # a bad row, or bytes that are not UTF-8: the client's error
        raise HTTPException(status_code=422, detail=f"line {reader.line_num}: {exc}") from None
    finally:
        text.detach()  # leave file.file open: FastAPI closes the upload after the response
    return {"rows": rows, "total_cents": total_cents}
