"""atomic.py's transfers, safe to retry: every transfer carries an Idempotency-Key, a name the
client gives it (a fresh UUID), and sends again with every retry. The key is stored in the same
transaction as the debit: a retry of a transfer already booked finds the key taken and gets the
first answer back; the money moves once. A key sent with another transfer is a 422."""

import hashlib
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

import atomic
import fixed_app
from fixed_app import Receipt, SessionDep, TransferRequest

Key = Annotated[str, Header(alias="Idempotency-Key", min_length=16, max_length=64)]
CLAIM = text("INSERT INTO idempotency_keys (key, fingerprint) VALUES (:key, :fp)")
KEEP = text("UPDATE idempotency_keys SET receipt = :receipt WHERE key = :key")
SEEN = text("SELECT fingerprint, receipt FROM idempotency_keys WHERE key = :key")

app = FastAPI(title="Transfers", lifespan=fixed_app.lifespan)
fixed_app.add_problem_details(app)


@app.post("/transfers", response_model=Receipt)
async def transfer_endpoint(request: TransferRequest, session: SessionDep, key: Key):
    fingerprint = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
    try:
        # The key first: its row is this transfer's claim, committed with the debit or not at all.
        await session.execute(CLAIM, {"key": key, "fp": fingerprint})
        booked = await fixed_app.booked(atomic.book_atomic, session, request)  # the debit
        receipt = Receipt.model_validate(booked)
        await session.execute(KEEP, {"receipt": receipt.model_dump_json(), "key": key})
        await session.commit()
        return receipt
    except IntegrityError:  # the key is taken: a retry of a transfer already booked
        await session.rollback()
    seen = (await session.execute(SEEN, {"key": key})).one()
    if seen.fingerprint != fingerprint:
        raise HTTPException(422, detail="this Idempotency-Key was sent with another transfer")
    return Receipt.model_validate_json(seen.receipt)
