"""Frontend bugs, generated: a valid transfer with exactly one part spoiled.

Every value drawn here is wrong by construction (a test below the lesson checks that the fixed app
accepts none of them), so a 200 for one of them is a transfer that should never have happened.
"""

import math

from hypothesis import strategies as st

BENEFICIARY = {"name": "Mei Lin", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}
VALID = {"account_id": 1, "amount": 12.5, "beneficiary": BENEFICIARY}  # account 1 holds 100.00
LETTERS = "abcxyz $,-'"  # never a number, never an IBAN

junk = st.one_of(st.none(), st.text(LETTERS, max_size=6), st.lists(st.integers(), min_size=1, max_size=2),
                 st.dictionaries(st.text(LETTERS, max_size=3), st.integers(), max_size=2))

bad_account_id = st.one_of(
    st.integers(max_value=0),                                     # zero or negative
    st.integers(min_value=2**63, max_value=2**80),                # past SQLite's 8-byte INTEGER
    st.integers(min_value=1000, max_value=10**9),                 # nobody has this account
    st.floats().filter(lambda x: not math.isfinite(x) or x != int(x)),  # 1.5, nan, inf
    st.booleans(), junk,
)

bad_amount = st.one_of(
    st.floats(max_value=0),                                       # zero or negative (-inf too)
    st.sampled_from([math.nan, math.inf]),
    st.floats(min_value=0.0001, max_value=99, allow_subnormal=False).filter(lambda x: round(x, 2) != x),  # sub-cent
    st.integers(min_value=10_001, max_value=10**12).map(lambda cents: cents / 100),  # more than the balance
    st.booleans(), junk,
)

bad_beneficiary = st.one_of(
    junk,                                                          # not an object
    st.sampled_from(sorted(BENEFICIARY)).map(lambda key: {k: v for k, v in BENEFICIARY.items() if k != key}),
    st.integers(min_value=10**12, max_value=10**19).map(lambda n: {**BENEFICIARY, "iban": n}),  # a number
    st.sampled_from(["DE89370400440532013001", "DE89 3704 0044 0532 0130 00", "de89370400440532013000",
                     "DE8937040044", "XX" * 11])
      .map(lambda n: {**BENEFICIARY, "iban": n}),                  # check digits, spaces, case, short, letters
    st.text(LETTERS, max_size=5).map(lambda b: {**BENEFICIARY, "bic": b}),
    st.sampled_from(["", "x" * 71]).map(lambda n: {**BENEFICIARY, "name": n}),
)

bad_transfer = st.one_of(
    bad_account_id.map(lambda v: {**VALID, "account_id": v}),
    bad_amount.map(lambda v: {**VALID, "amount": v}),
    bad_beneficiary.map(lambda v: {**VALID, "beneficiary": v}),
    st.sampled_from(sorted(VALID)).map(lambda key: {k: v for k, v in VALID.items() if k != key}),  # a field missing
)
