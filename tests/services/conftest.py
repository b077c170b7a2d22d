"""Fixtures shared by the service tests: the Q/R corpus stored as files."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.index import StoredInstance
from archive.store import scan_file
from tests.interop.qrhelpers import build_corpus


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StoredInstance]]:
    """Study A1 of the Q/R corpus (3 Explicit + 2 Implicit VR LE CT) as stored files."""
    root = tmp_path_factory.mktemp("store")
    corpus = build_corpus(root / "i")
    stored = []
    for instance in corpus.of_study("A1"):
        scanned = scan_file(instance.path)
        stored.append(
            StoredInstance(
                attrs=scanned.attrs,
                path=str(instance.path.relative_to(root)),
                size=scanned.size,
                digest=scanned.digest,
                transfer_syntax_uid=scanned.meta.transfer_syntax_uid,
                source_ae="TEST",
                received_at=0.0,
            )
        )
    return root, stored
