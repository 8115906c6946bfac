"""Declare an UploadFile parameter without python-multipart (BLOCK_MULTIPART=1 hides it).

    BLOCK_MULTIPART=1 python needs_multipart.py
"""

import os
import sys

if os.environ.get("BLOCK_MULTIPART") == "1":
    # As if it were not installed: `import python_multipart` (and the old name `multipart`) now
    # raise ImportError. Nothing is uninstalled.
    sys.modules["python_multipart"] = None
    sys.modules["multipart"] = None

from fastapi import FastAPI, UploadFile  # noqa: E402

app = FastAPI()

try:
    @app.post("/upload")  # FastAPI checks for python-multipart here, when the route is declared
    async def upload(file: UploadFile) -> dict:
        return {"filename": file.filename}
except RuntimeError as exc:
    print(f"RuntimeError: {exc}")
    sys.exit(1)
print("route declared: python-multipart is installed")
