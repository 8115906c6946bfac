"""Hand the spooled file to pandas: `pd.read_csv(file.file)` (the course brief's "streaming").

    uvicorn pandas_upload:app
"""

import pandas as pd
from fastapi import FastAPI, UploadFile

app = FastAPI()


@app.post("/import")
async def import_readings(file: UploadFile) -> dict:
    df = pd.read_csv(file.file)  # reads from the spooled file, but builds the whole DataFrame
    return {"rows": len(df), "total_wh": int(df["wh"].sum())}
