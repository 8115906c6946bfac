"""Frontend bugs, generated: a valid payment with exactly one part spoiled.

Every value drawn here is wrong by construction (a test below the lesson checks that the fixed app
accepts none of them), so a 200 for one of them is a payment that should never have happened.
"""

import math

from hypothesis import strategies as st

CARD = {"number": "4242424242424242", "expiry": "12/30", "cvv": "123"}
VALID = {"user_id": 1, "amount": 12.5, "card": CARD}  # user 1 has 100.00
LETTERS = "abcxyz $,-'"  # never a number, never a date

junk = st.one_of(st.none(), st.text(LETTERS, max_size=6), st.lists(st.integers(), min_size=1, max_size=2),
                 st.dictionaries(st.text(LETTERS, max_size=3), st.integers(), max_size=2))

bad_user_id = st.one_of(
    st.integers(max_value=0),                                     # zero or negative
    st.integers(min_value=2**63, max_value=2**80),                # past SQLite's 8-byte INTEGER
    st.integers(min_value=1000, max_value=10**9),                 # nobody has this id
    st.floats().filter(lambda x: not math.isfinite(x) or x != int(x)),  # 1.5, nan, inf
    junk,
)

bad_amount = st.one_of(
    st.floats(max_value=0),                                       # zero or negative (-inf too)
    st.sampled_from([math.nan, math.inf]),
    st.floats(min_value=0.0001, max_value=99, allow_subnormal=False).filter(lambda x: round(x, 2) != x),  # sub-cent
    st.integers(min_value=10_001, max_value=10**12).map(lambda cents: cents / 100),  # more than the balance
    st.booleans(), junk,
)

bad_card = st.one_of(
    junk,                                                          # not an object
    st.sampled_from(sorted(CARD)).map(lambda key: {k: v for k, v in CARD.items() if k != key}),  # a key missing
    st.integers(min_value=10**12, max_value=10**19).map(lambda n: {**CARD, "number": n}),  # a number, not a string
    st.sampled_from(["4242424242424241", "4242 4242 4242 4242", "1234567812345678", "42", "x" * 16])
      .map(lambda n: {**CARD, "number": n}),                       # fails Luhn, spaces, too short, letters
    st.text(LETTERS, max_size=5).map(lambda c: {**CARD, "cvv": c}),
    junk.map(lambda e: {**CARD, "expiry": e}),
)

bad_payment = st.one_of(
    bad_user_id.map(lambda v: {**VALID, "user_id": v}),
    bad_amount.map(lambda v: {**VALID, "amount": v}),
    bad_card.map(lambda v: {**VALID, "card": v}),
    st.sampled_from(sorted(VALID)).map(lambda key: {k: v for k, v in VALID.items() if k != key}),  # a field missing
)
