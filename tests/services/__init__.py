import pytest

# The shared helper module holds assertions too: give their failures pytest's detail.
pytest.register_assert_rewrite("tests.services.retrievehelpers")
