"""The naive wrapper: the legacy functions behind HTTP, as fast as it can be typed."""

from fastapi import FastAPI

import legacy_transfers as legacy

app = FastAPI(title="Transfers (naive)")


@app.get("/accounts/{account_id}")
def read_account(account_id: int):
    return legacy.get_account(account_id)


@app.get("/accounts")
def search_accounts(email: str):
    return legacy.find_accounts(email)


@app.post("/transfers")
def transfer_endpoint(account_id: int, amount: float, beneficiary: dict):
    return legacy.send_money(account_id, amount, beneficiary)
