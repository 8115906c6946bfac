"""The smallest async test there is."""

import pytest


@pytest.mark.asyncio
async def test_one_plus_one():
    assert 1 + 1 == 2
