"""The transfer rules, free of HTTP and of any database: what the production version keeps."""

import secrets


class InsufficientFunds(ValueError):
    """The balance does not cover the amount (a ValueError, as the legacy code raised)."""


def iban_valid(iban: str) -> bool:
    """The ISO 13616 check every IBAN carries: move the country and check digits to the end, turn
    letters into numbers (A = 10 ... Z = 35), and the whole number modulo 97 is 1. Catches a
    mistyped character and nearly every pair of swapped ones."""
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def debit(balance, amount):
    """The balance left after sending ``amount``. Works in any exact unit (int cents, Decimal)."""
    if amount > balance:
        raise InsufficientFunds(f"balance {balance} does not cover {amount}")
    return balance - amount


def new_transfer_id() -> str:
    return "tr_" + secrets.token_hex(8)
