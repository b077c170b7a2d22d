"""Reassembly of DIMSE messages from P-DATA PDVs, sans-IO (PS3.7 6.3, PS3.8 Annex E).

A DIMSE message is a command set, then a data set when the command's Command
Data Set Type says one follows. Each is carried as a run of PDV fragments whose
message control header marks command vs data set and the last fragment (PS3.8
E.2). The :class:`MessageAssembler` is fed one PDV at a time:

- command fragments are copied and joined (a command set is small; it is
  capped at :data:`MAX_COMMAND_LENGTH`), then decoded when the last one arrives;
- data set fragments are handed back at once, as the very memoryview the PDU
  decoder produced: never copied nor joined, so an instance of any size flows
  to storage with flat memory. A consumer that keeps a fragment past the
  current PDU must copy it, since the view points into the receive buffer.

Sequence rules (PS3.7 6.3.1: a message's command set and data set travel on one
presentation context, the data set after the command announcing it; PS3.8 E.2:
fragments are not interleaved) are enforced with :class:`RemoteProtocolError`,
carrying the same A-ABORT as any broken DIMSE message; after one the
association is aborted and the assembler is not used again. This module does
not know which contexts were accepted; the caller checks that.
"""

from __future__ import annotations

import msgspec

from archive.dicom.dimse.command import Command, decode_command, dimse_protocol_error
from archive.dicom.ul.pdata import MCH_COMMAND, MCH_LAST, Pdv

__all__ = ["MAX_COMMAND_LENGTH", "CommandReceived", "DatasetFragment", "MessageAssembler"]

#: Largest command set accepted. Real ones are a few hundred bytes; the cap stops
#: a peer from making us buffer an endless "command".
MAX_COMMAND_LENGTH = 64 * 1024


class CommandReceived(msgspec.Struct, frozen=True, gc=False):
    """A whole command set arrived and decoded. ``raw`` is its group-0000 bytes."""

    context_id: int
    command: Command
    raw: bytes


class DatasetFragment(msgspec.Struct, frozen=True, gc=False):
    """One data set PDV, uncopied: ``data`` is a view into the receive buffer."""

    context_id: int
    data: memoryview
    last: bool


class MessageAssembler:
    """Turns a stream of PDVs into commands and data set fragments (PS3.8 E.2)."""

    __slots__ = ("_command_length", "_context_id", "_expecting_dataset", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._command_length = 0
        # Context of the message in progress; None between messages.
        self._context_id: int | None = None
        self._expecting_dataset = False

    @property
    def expecting_dataset(self) -> bool:
        """True between a command announcing a data set and its last fragment."""
        return self._expecting_dataset

    def receive(self, pdv: Pdv) -> CommandReceived | DatasetFragment | None:
        """Take one PDV; return a completed command, a data set fragment, or None.

        None means a command fragment was buffered and more are needed.
        """
        context_id, control, data = pdv
        if self._context_id is not None and context_id != self._context_id:
            raise dimse_protocol_error(
                f"PDV on presentation context {context_id} in the middle of a message"
                f" on context {self._context_id}"
            )
        if not control & MCH_COMMAND:  # a data set fragment
            if not self._expecting_dataset:
                raise dimse_protocol_error("data set PDV without a command announcing one")
            last = bool(control & MCH_LAST)
            if last:
                self._expecting_dataset = False
                self._context_id = None
            return DatasetFragment(context_id, data, last)

        if self._expecting_dataset:
            raise dimse_protocol_error("command PDV while a data set is still expected")
        length = self._command_length + len(data)
        if length > MAX_COMMAND_LENGTH:
            raise dimse_protocol_error(f"command set longer than {MAX_COMMAND_LENGTH} bytes")
        if not control & MCH_LAST:  # more command fragments to come
            self._parts.append(bytes(data))
            self._command_length = length
            self._context_id = context_id
            return None

        if self._parts:
            self._parts.append(bytes(data))
            raw = b"".join(self._parts)
            self._parts.clear()
            self._command_length = 0
            self._context_id = None
        else:
            raw = bytes(data)
        command = decode_command(raw)
        if command.has_dataset:
            self._expecting_dataset = True
            self._context_id = context_id
        else:
            self._context_id = None
        return CommandReceived(context_id, command, raw)
