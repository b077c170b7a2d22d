"""The composition root: one node's store, index, services and server, built from config.

``async with Node(config) as node:`` opens the data folder (file store, index),
recovers from a crash (removes half-written files, re-indexes files that were
placed but maybe not indexed), and starts listening; leaving the block shuts the
server down within the grace period and closes the index after its last commit.
The CLI, the importer and the tests all build the node here, so they run the same
code the server does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

from archive.config import Config
from archive.dicom.ul.negotiation import default_acceptor_policy
from archive.index import Index, StoredInstance
from archive.net import Server
from archive.services import Ingest, default_registry
from archive.store import FileStore, scan_file

log = logging.getLogger("archive.node")

INDEX_FILE = "index.sqlite"


class Storage:
    """The data folder opened: file store, index and the ingest path over them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = Path(config.node.data_dir)
        durability = config.store.durability
        self.files = FileStore(self.root, durable=durability == "strict")
        self.index: Index | None = None
        self.ingest: Ingest | None = None

    async def open(self) -> Storage:
        await self.files.open()
        self.index = await Index.open(
            self.root / INDEX_FILE,
            durability="strict" if self.config.store.durability == "strict" else "fast",
        )
        self.ingest = Ingest(
            self.files,
            self.index,
            duplicates=_policy(self.config.store.duplicates),
        )
        await self.recover()
        return self

    async def recover(self) -> None:
        """Re-index the files a crash left placed but maybe not indexed."""
        assert self.index is not None
        placed = await self.files.recover()
        for relative in placed:
            try:
                scanned = await self.files.run(scan_file, self.files.path(relative))
            except Exception as exc:  # an unreadable file: it was never acknowledged
                log.warning("recovery: removing unreadable %s: %s", relative, exc)
                await self.files.remove(relative)
                continue
            uid = scanned.attrs.sop_instance_uid
            await self.index.replace(
                StoredInstance(
                    attrs=scanned.attrs,
                    path=relative,
                    size=scanned.size,
                    digest=scanned.digest,
                    transfer_syntax_uid=scanned.meta.transfer_syntax_uid,
                    source_ae=scanned.meta.source_application_entity_title,
                    received_at=time.time(),
                )
            )
            await self.files.remove_other_versions(uid, keep=relative)
        if placed:
            log.info("recovery: re-indexed %d instance(s) in flight at the last stop", len(placed))

    async def close(self) -> None:
        if self.index is not None:
            await self.index.close()
        self.files.close()


class Node:
    """A running archive node."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.storage = Storage(config)
        self.server: Server | None = None

    async def start(self) -> Node:
        await self.storage.open()
        registry = default_registry(self.storage.ingest)
        self.server = Server(self.config, default_acceptor_policy(self.config), registry)
        await self.server.start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
            await self.server.shutdown(self.config.node.shutdown_grace if grace is None else grace)
        await self.storage.close()

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _policy(value: str) -> Literal["keep", "replace", "reject"]:
    if value == "replace":
        return "replace"
    if value == "reject":
        return "reject"
    return "keep"
