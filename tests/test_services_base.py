"""services.base.failure: generic failure responses that echo the request's UIDs."""

from __future__ import annotations

from archive.dicom.dimse import CCancelRq, CEchoRq, CEchoRsp, CStoreRq, CStoreRsp, Status
from archive.services import failure


def test_failure_echoes_uids_and_cuts_the_comment() -> None:
    rq = CStoreRq(message_id=7, affected_sop_class_uid="1.2.3", affected_sop_instance_uid="1.2.3.4")
    response = failure(rq, Status.SOP_CLASS_NOT_SUPPORTED, "x" * 100)
    assert response is not None
    assert response.command == CStoreRsp(
        message_id_being_responded_to=7,
        status=Status.SOP_CLASS_NOT_SUPPORTED,
        affected_sop_class_uid="1.2.3",
        affected_sop_instance_uid="1.2.3.4",
        error_comment="x" * 64,
    )


def test_failure_keeps_only_fields_the_response_has() -> None:
    response = failure(
        CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1"), 0x0211, "no"
    )
    assert response is not None
    assert response.command == CEchoRsp(
        message_id_being_responded_to=1,
        status=0x0211,
        affected_sop_class_uid="1.2.840.10008.1.1",
        error_comment="no",
    )


def test_no_failure_response_for_a_cancel() -> None:
    assert failure(CCancelRq(message_id_being_responded_to=3), 0x0211, "no") is None
