"""The business code as it was: an account search and a transfer function, written for a script.

Everything the lesson fixes is here, as it is often written: SQL built with f-strings, money as a
float, the beneficiary as a plain dict, a ValueError for a refused transfer, every column in the
result. The database is the SQLite file named by TRANSFERS_DB.
"""

import os
import sqlite3
import uuid
from contextlib import closing


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(os.environ["TRANSFERS_DB"])
    db.row_factory = sqlite3.Row  # rows behave like dicts
    return db


def find_accounts(email: str) -> list[dict]:
    with closing(connect()) as db:
        rows = db.execute(f"SELECT * FROM accounts WHERE email = '{email}'").fetchall()
    return [dict(row) for row in rows]


def get_account(account_id: int) -> dict:
    with closing(connect()) as db:
        return dict(db.execute(f"SELECT * FROM accounts WHERE id = {account_id}").fetchone())


def send_money(account_id: int, amount: float, beneficiary: dict) -> dict:
    with closing(connect()) as db:
        account = db.execute(f"SELECT * FROM accounts WHERE id = {account_id}").fetchone()
        balance = account["balance_cents"] / 100
        if balance < amount:
            raise ValueError("Insufficient funds")
        new_balance = balance - amount
        cents = int(new_balance * 100)
        db.execute(f"UPDATE accounts SET balance_cents = {cents} WHERE id = {account_id}")
        db.commit()
    return {"status": "success", "transfer_id": uuid.uuid4().hex[:12], "amount": amount,
            "balance": new_balance, "beneficiary": beneficiary, "account": dict(account)}
