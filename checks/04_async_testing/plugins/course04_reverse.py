"""pytest plugin for the grader: run the collected tests in reverse order."""

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    items.reverse()
