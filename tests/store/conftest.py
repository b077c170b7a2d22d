"""Fixtures of the store tests."""

from __future__ import annotations

import pytest

from archive.store import place


@pytest.fixture
def python_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's last trip through the pure-Python twin, whose os calls a test can fake.

    The C one (archive._native) makes the same calls without going through ``os``:
    tests/store/test_place.py holds the two to identical results, with real faults.
    """
    monkeypatch.setattr(place, "write_and_link", place.write_and_link_py)
