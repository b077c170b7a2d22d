"""Verification Service Class SCP: C-ECHO, PS3.4 Annex A and PS3.7 9.1.5."""

from __future__ import annotations

from collections.abc import AsyncIterator

from archive.dicom.dimse import CEchoRq, CEchoRsp, Status
from archive.services.base import Request, Response


async def c_echo(request: Request) -> AsyncIterator[Response]:
    """Answer C-ECHO-RQ with Success (PS3.7 9.3.5.2): the association works."""
    command = request.command
    assert isinstance(command, CEchoRq)
    yield Response(
        CEchoRsp(
            message_id_being_responded_to=command.message_id,
            affected_sop_class_uid=command.affected_sop_class_uid,
            status=Status.SUCCESS,
        )
    )
