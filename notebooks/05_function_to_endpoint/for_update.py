"""The other fix, where the database has row locks: SELECT ... FOR UPDATE. On PostgreSQL every other
transaction that wants the row waits until this one commits, so the balance read is still the
balance when it is written. SQLite has no row locks, and SQLAlchemy leaves the clause out there."""

from sqlalchemy import column, select, table, text

import fixed_app
from transfers import debit, new_transfer_id

accounts = table("accounts", column("id"), column("balance_cents"))


async def book_for_update(session, request) -> dict:
    read = select(accounts.c.balance_cents).where(accounts.c.id == request.account_id)
    balance = await session.scalar(read.with_for_update())  # PostgreSQL: others wait for our commit
    if balance is None:
        raise fixed_app.UnknownAccount(request.account_id)
    left = debit(balance, int(request.amount * 100))  # the rule, on a balance held for us
    await fixed_app.screen(request.beneficiary)
    await session.execute(text("UPDATE accounts SET balance_cents = :left WHERE id = :id"),
                          {"left": left, "id": request.account_id})
    return {"transfer_id": new_transfer_id(), "account_id": request.account_id,
            "amount": request.amount, "balance": fixed_app.money(left),
            "to_iban": request.beneficiary.iban}


app = fixed_app.make_app(book_for_update)
