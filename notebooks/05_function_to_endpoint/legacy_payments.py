"""The business code as it was: a user search and a payment function, written for a script.

Everything the lesson fixes is here, as it is often written: SQL built with f-strings, money as a
float, the card as a plain dict, a ValueError for a refused payment, every column in the result.
The database is the SQLite file named by PAYMENTS_DB.
"""

import os
import sqlite3
import uuid
from contextlib import closing


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(os.environ["PAYMENTS_DB"])
    db.row_factory = sqlite3.Row  # rows behave like dicts
    return db


def find_users(email: str) -> list[dict]:
    with closing(connect()) as db:
        rows = db.execute(f"SELECT * FROM users WHERE email = '{email}'").fetchall()
    return [dict(row) for row in rows]


def get_user(user_id: int) -> dict:
    with closing(connect()) as db:
        return dict(db.execute(f"SELECT * FROM users WHERE id = {user_id}").fetchone())


def process_payment(user_id: int, amount: float, card: dict) -> dict:
    with closing(connect()) as db:
        user = db.execute(f"SELECT * FROM users WHERE id = {user_id}").fetchone()
        balance = user["balance_cents"] / 100
        if balance < amount:
            raise ValueError("Insufficient funds")
        new_balance = balance - amount
        db.execute(f"UPDATE users SET balance_cents = {int(new_balance * 100)} WHERE id = {user_id}")
        db.commit()
    return {"status": "success", "transaction_id": uuid.uuid4().hex[:12], "amount": amount,
            "balance": new_balance, "card": card}
