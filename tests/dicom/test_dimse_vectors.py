"""DIMSE command set codec against its golden vectors and the pydicom oracle.

Each vector (``dimse_vectors``, PS3.7 9.3 and 10.3, one per message type) must be
what the encoder writes, decode to its record from bytes, bytearray or a memoryview
slice, and be what pydicom writes for the same elements.
"""

from __future__ import annotations

import pytest

from archive.dicom.dimse import (
    Command,
    CommandField,
    decode_command,
    encode_command,
)
from tests.dicom.dimse_vectors import (
    C_STORE_RQ,
    MESSAGE_TYPES,
    VECTOR_IDS,
    VECTORS,
    oracle_encode,
)

# --- vectors -----------------------------------------------------------------


@pytest.mark.parametrize(("vector", "cmd"), VECTORS, ids=VECTOR_IDS)
def test_encode_gives_vector(vector: bytes, cmd: Command) -> None:
    assert encode_command(cmd) == vector


@pytest.mark.parametrize(("vector", "cmd"), VECTORS, ids=VECTOR_IDS)
def test_decode_gives_record(vector: bytes, cmd: Command) -> None:
    decoded = decode_command(vector)
    assert type(decoded) is type(cmd)
    assert decoded == cmd
    assert encode_command(decoded) == vector
    assert decode_command(memoryview(vector)) == cmd
    assert decode_command(bytearray(vector)) == cmd


@pytest.mark.parametrize(("vector", "cmd"), VECTORS, ids=VECTOR_IDS)
def test_vector_matches_pydicom_oracle(vector: bytes, cmd: Command) -> None:
    assert oracle_encode(cmd) == vector


def test_vectors_cover_every_message_type() -> None:
    assert {t.command_field for t in MESSAGE_TYPES} == set(CommandField)


def test_decode_from_memoryview_slice_of_bigger_buffer() -> None:
    # The assembler and PDU decoder hand over views into a larger receive buffer.
    buffer = b"\xff" * 7 + C_STORE_RQ + b"\xee" * 5
    view = memoryview(buffer)[7 : 7 + len(C_STORE_RQ)]
    assert decode_command(view) == VECTORS[2][1]
