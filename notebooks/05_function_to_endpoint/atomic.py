"""The fix for the double spend: the database checks the balance and debits it in one statement.
A transfer that read a balance another one has spent since finds no row to change."""

from sqlalchemy import text

import fixed_app
from transfers import InsufficientFunds, new_transfer_id

DEBIT = text("UPDATE accounts SET balance_cents = balance_cents - :cents "
             "WHERE id = :id AND balance_cents >= :cents RETURNING balance_cents")


async def book_atomic(session, request) -> dict:
    cents = int(request.amount * 100)
    await fixed_app.screen(request.beneficiary)
    left = (await session.execute(DEBIT, {"cents": cents, "id": request.account_id})).scalar()
    if left is None:  # no row changed: no such account, or not enough left in it
        known = await session.scalar(text("SELECT count(*) FROM accounts WHERE id = :id"),
                                     {"id": request.account_id})
        raise InsufficientFunds() if known else fixed_app.UnknownAccount(request.account_id)
    return {"transfer_id": new_transfer_id(), "account_id": request.account_id,
            "amount": request.amount, "balance": fixed_app.money(left),
            "to_iban": request.beneficiary.iban}


app = fixed_app.make_app(book_atomic)
