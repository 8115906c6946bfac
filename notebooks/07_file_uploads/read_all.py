"""Read the whole upload into memory, then parse it: `await file.read()`.

    uvicorn read_all:app      # POST /import with a multipart field `file`: meter readings
"""

import csv
import io

from fastapi import FastAPI, UploadFile

app = FastAPI()


@app.post("/import")
async def import_readings(file: UploadFile) -> dict:
    data = await file.read()  # the whole file, as bytes...
    reader = csv.reader(io.StringIO(data.decode("utf-8")))  # ...then again, as text
    next(reader)  # the header: meter,read_at,wh,note
    rows = total_wh = 0
    for meter, read_at, wh, note in reader:
        rows += 1
        total_wh += int(wh)
    return {"rows": rows, "total_wh": total_wh}
