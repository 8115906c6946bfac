"""The payment rules, free of HTTP and of any database: what the production version keeps."""

import secrets


class InsufficientFunds(ValueError):
    """The balance does not cover the amount (a ValueError, as the legacy code raised)."""


def luhn_valid(number: str) -> bool:
    """The Luhn checksum every card number carries: catches a mistyped digit or two swapped ones."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch)
        if i % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def charge(balance, amount):
    """The balance left after paying ``amount``. Works in any exact unit (int cents, Decimal)."""
    if amount > balance:
        raise InsufficientFunds(f"balance {balance} does not cover {amount}")
    return balance - amount


def new_transaction_id() -> str:
    return "tx_" + secrets.token_hex(8)
