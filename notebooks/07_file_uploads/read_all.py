"""Read the whole upload into memory, then parse it: `await file.read()`.

    uvicorn read_all:app
"""

import csv
import io

from fastapi import FastAPI, UploadFile

app = FastAPI()


@app.post("/import")
async def import_products(file: UploadFile) -> dict:
    data = await file.read()  # the whole file, as bytes...
    reader = csv.reader(io.StringIO(data.decode("utf-8")))  # ...then again, as text
    next(reader)  # the header
    rows = total_cents = 0
    for sku, name, price_cents, description in reader:
        rows += 1
        total_cents += int(price_cents)
    return {"rows": rows, "total_cents": total_cents}
