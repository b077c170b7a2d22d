import pytest

# The shared helper modules hold assertions too: give their failures pytest's detail.
pytest.register_assert_rewrite(
    "tests.dicom.machine_helpers",
    "tests.dicom.header_helpers",
    "tests.dicom.dimse_vectors",
    "tests.dicom.negotiation_helpers",
)
