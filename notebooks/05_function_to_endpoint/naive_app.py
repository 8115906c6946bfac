"""The naive wrapper: the legacy functions behind HTTP, as fast as it can be typed."""

from fastapi import FastAPI

import legacy_payments as legacy

app = FastAPI(title="Payments (naive)")


@app.get("/users/{user_id}")
def read_user(user_id: int):
    return legacy.get_user(user_id)


@app.get("/users")
def search_users(email: str):
    return legacy.find_users(email)


@app.post("/payment")
def payment_endpoint(user_id: int, amount: float, card: dict):
    return legacy.process_payment(user_id, amount, card)
