"""Records the index takes and gives: frozen msgspec Structs, no behaviour."""

from __future__ import annotations

import msgspec

from archive.dicom.attributes import InstanceAttributes

__all__ = ["InstanceRow", "Stats", "StoredInstance", "WriterStats"]


class StoredInstance(msgspec.Struct, frozen=True, kw_only=True):
    """What the C-STORE SCP adds for one instance once its file is durable."""

    attrs: InstanceAttributes
    #: File path relative to the data folder.
    path: str
    #: File size in bytes.
    size: int
    #: Hex SHA-256 of the stored file's dataset bytes.
    digest: str
    transfer_syntax_uid: str
    #: Calling AE title of the association that sent it.
    source_ae: str
    #: Unix time of reception.
    received_at: float


class InstanceRow(msgspec.Struct, frozen=True):
    """Where an instance lives and how to send it (retrieve, reconcile, replace)."""

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    path: str
    size: int
    digest: str
    transfer_syntax_uid: str


class Stats(msgspec.Struct, frozen=True):
    """Archive-wide counts."""

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int


class WriterStats(msgspec.Struct, frozen=True):
    """Counters of the group-commit writer since open (metrics and tests)."""

    #: Transactions committed.
    commits: int
    #: Operations (add, replace, remove) in committed transactions.
    operations: int
    #: Transactions rolled back; their operations failed with IndexWriteError.
    failed_batches: int
    #: The largest number of operations committed in one transaction.
    largest_batch: int
