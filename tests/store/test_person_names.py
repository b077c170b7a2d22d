"""Person names with and without their trailing empty components, end to end:
stored through C-STORE, found by pynetdicom's C-FIND in the other form (PS3.5
6.2.1.1 lets a sender omit trailing empty components and their delimiters, so
``DOE^JOHN^^^`` and ``DOE^JOHN`` are one name)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

from archive.dicom.uids import EXPLICIT_VR_LE
from tests.conftest import RunningNode
from tests.store.helpers import SUCCESS, Item, archive_store, make_dataset, new_uid

FIND = PatientRootQueryRetrieveInformationModelFind


def _patients(node: RunningNode, name: str) -> list[tuple[str, str]]:
    """(PatientID, PatientName) of each patient a PATIENT level query for ``name`` finds."""
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = name
    query.PatientID = ""
    ae = AE(ae_title="PNSCU")
    ae.add_requested_context(FIND)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        answers = list(assoc.send_c_find(query, FIND))
    finally:
        assoc.release()
    assert int(answers[-1][0].Status) == 0x0000
    return sorted((str(ds.PatientID), str(ds.PatientName)) for _, ds in answers[:-1])


def test_trailing_empty_components_neither_hide_a_name_nor_are_needed(
    node: RunningNode,
) -> None:
    items = [
        Item.of(
            make_dataset(patient_id=patient, patient_name=name, study_uid=new_uid()),
            EXPLICIT_VR_LE,
        )
        for patient, name in (("PN-1", "DOE^JOHN^^^"), ("PN-2", "ROE^JANE"))
    ]
    assert archive_store(node.port, items, EXPLICIT_VR_LE) == [SUCCESS, SUCCESS]
    # Indexed without them, so answered without them: the same name (PS3.5 6.2.1.1).
    assert _patients(node, "DOE^JOHN") == [("PN-1", "DOE^JOHN")]
    assert _patients(node, "DOE^JOHN^^^") == [("PN-1", "DOE^JOHN")]
    assert _patients(node, "ROE^JANE^^^") == [("PN-2", "ROE^JANE")]
    assert _patients(node, "ROE^JANE") == [("PN-2", "ROE^JANE")]
    # Still an exact match otherwise: a middle name is not an empty one.
    assert _patients(node, "DOE^JOHN^A") == []


def test_wild_cards_after_a_caret_find_names_sent_with_trailing_carets(
    node: RunningNode,
) -> None:
    """``DOE^*`` finds a name sent as ``DOE^`` (one name with ``DOE``, and indexed
    so), as it did before names were trimmed; and still not ``DOEX``."""
    sent = (
        ("W-1", "DOE^"),
        ("W-2", "ROE^JANE^^^"),
        ("W-3", "POE^JO=^"),
        ("W-4", "DOEX^JOHN"),
        ("W-5", "DOE^JOHN"),
    )
    items = [
        Item.of(
            make_dataset(patient_id=patient, patient_name=name, study_uid=new_uid()),
            EXPLICIT_VR_LE,
        )
        for patient, name in sent
    ]
    assert archive_store(node.port, items, EXPLICIT_VR_LE) == [SUCCESS] * len(items)
    assert _patients(node, "DOE^*") == [("W-1", "DOE"), ("W-5", "DOE^JOHN")]
    assert _patients(node, "ROE^JANE^*") == [("W-2", "ROE^JANE")]
    assert _patients(node, "POE^JO=*") == [("W-3", "POE^JO")]
    assert _patients(node, "DOE^*^*") == [("W-1", "DOE"), ("W-5", "DOE^JOHN")]
    assert _patients(node, "*^JANE") == [("W-2", "ROE^JANE")]
    assert _patients(node, "DOE*") == [("W-1", "DOE"), ("W-4", "DOEX^JOHN"), ("W-5", "DOE^JOHN")]
