"""The node's configuration: one TOML file decoded into frozen msgspec Structs.

Every option has a default, so ``Config()`` is the embedded configuration and the
node runs with no file at all. :func:`load_config` / :func:`parse_config` decode
the file (``tomllib``), convert it with msgspec (unknown keys are errors) and
validate it once; every failure is a :class:`~archive.errors.ConfigError` whose
``key`` is the dotted path of the culprit ("association.max_pdu_length",
"peers[1].port"; "" for the file as a whole) and whose ``problem`` says what is
wrong in plain words. :func:`with_overrides` applies command-line flags with the
same validation; peers typed on the command line are ``archive/peers.py``'s. The
objects are immutable and passed explicitly: there is no module-level mutable
state.

A complete file with every default::

    [node]
    ae_title = "ARCHIVE"
    host = "0.0.0.0"
    port = 11112
    data_dir = "./data"
    loop = "auto"
    backlog = 1024
    log_level = "INFO"
    shutdown_grace = 10.0

    [association]
    check_called_ae = true
    accepted_calling_aes = []
    check_calling_host = false
    max_associations = 200
    max_pdu_length = 262144
    accept_all_transfer_syntaxes = true
    transfer_syntaxes = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]

    [timeouts]
    artim = 30.0
    network = 60.0
    dimse = 30.0
    connect = 10.0

    [store]
    durability = "strict"
    flush = "batch"
    duplicates = "keep"
    cache_new_files = false

    [query]
    max_matches = 10000
    case_insensitive_names = false
    match_unknown = true

    [retrieve]
    move_associations = 4
    get_window = 4

    [[peers]]            # zero or more
    ae_title = "PACS2"
    host = "10.0.0.5"
    port = 104
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from typing import Any, Final

import msgspec

from archive.dicom.uids import ALL_TRANSFER_SYNTAXES, EXPLICIT_VR_LE, IMPLICIT_VR_LE, is_valid_uid
from archive.errors import ConfigError

__all__ = [
    "LOG_LEVELS",
    "LOOPS",
    "MAX_GET_WINDOW",
    "MAX_MOVE_ASSOCIATIONS",
    "MAX_PDU_LENGTH_RANGE",
    "AssociationConfig",
    "Config",
    "NodeConfig",
    "Peer",
    "QueryConfig",
    "RetrieveConfig",
    "StoreConfig",
    "TimeoutsConfig",
    "check_ae_title",
    "check_host",
    "load_config",
    "parse_config",
    "validate",
    "with_overrides",
]

#: Accepted values of ``node.loop``.
LOOPS: Final = ("auto", "asyncio", "uvloop")
#: Accepted values of ``store.durability``, ``store.flush`` and ``store.duplicates``.
DURABILITIES: Final = ("strict", "fast")
FLUSHES: Final = ("batch", "file")
DUPLICATE_POLICIES: Final = ("keep", "replace", "reject")
#: Accepted values of ``node.log_level`` (the names of the :mod:`logging` levels).
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Bounds of ``association.max_pdu_length``. PS3.8 D.1 lets the Maximum Length
#: Received be any 32-bit value, 0 meaning "no limit"; we refuse 0 and cap it at
#: 16 MiB because the value also bounds the largest PDU a peer may make us buffer
#: (times ``max_associations``). 4096 is the floor DCMTK applies too.
MAX_PDU_LENGTH_RANGE: Final = (4096, 16 * 1024 * 1024)
#: Upper bound of ``retrieve.move_associations``: each one holds a socket, a
#: file being read and a PDU buffer, and a destination rarely takes more.
MAX_MOVE_ASSOCIATIONS: Final = 32
#: Upper bound of ``retrieve.get_window``: each sub-operation in flight holds a
#: file's first chunk (1 MiB at most) in memory.
MAX_GET_WINDOW: Final = 64
#: Upper bound of ``query.max_matches`` (0 = unlimited): a 32-bit signed count.
_MAX_MATCHES_LIMIT: Final = 2**31 - 1


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[node]``: this application entity and its process.

    Attributes:
        ae_title: our AE title: 1 to 16 characters of the default character
            repertoire (printable ASCII), no backslash, not all spaces, no
            leading or trailing spaces (PS3.5 6.2, PS3.8 9.3.2).
        host: address to listen on ("0.0.0.0" all IPv4, "::" all IPv6).
        port: TCP port to listen on, 0 to 65535 (0 = any free port).
        data_dir: folder holding the index and the stored instances.
        loop: event loop: "auto" (uvloop when importable), "asyncio" or "uvloop".
        backlog: listen backlog, 1 to 65535.
        log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL.
        shutdown_grace: seconds open associations get to finish after SIGTERM or
            SIGINT before they are aborted (>= 0).
    """

    ae_title: str = "ARCHIVE"
    host: str = "0.0.0.0"
    port: int = 11112
    data_dir: str = "./data"
    loop: str = "auto"
    backlog: int = 1024
    log_level: str = "INFO"
    shutdown_grace: float = 10.0


class AssociationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[association]``: who may associate with us, and on what terms.

    Attributes:
        check_called_ae: reject an A-ASSOCIATE-RQ whose Called AE Title is not
            ``node.ae_title`` (PS3.8 9.3.4 reason 7).
        accepted_calling_aes: the Calling AE Titles allowed to associate; empty
            means any (PS3.8 9.3.4 reason 3 otherwise).
        check_calling_host: when true, a Calling AE Title must be one of
            ``[[peers]]`` and connect from that peer's ``host``.
        max_associations: open associations at most; beyond, requests are
            rejected transient, local limit exceeded (PS3.8 9.3.4).
        max_pdu_length: the Maximum Length Received we advertise (PS3.8 D.1),
            4096 to 16777216 bytes. The default, 256 KiB, was chosen by
            measurement (``bench/max_pdu.py``): the receive path moves ~2-4x
            more bytes per second than with DCMTK's and Orthanc's 16 KiB, and
            larger values gain nothing while raising memory per association.
        accept_all_transfer_syntaxes: accept every transfer syntax we know
            (:data:`archive.dicom.uids.ALL_TRANSFER_SYNTAXES`).
        transfer_syntaxes: the transfer syntax UIDs accepted when
            ``accept_all_transfer_syntaxes`` is false; at least one.
    """

    check_called_ae: bool = True
    accepted_calling_aes: tuple[str, ...] = ()
    check_calling_host: bool = False
    max_associations: int = 200
    max_pdu_length: int = 262144
    accept_all_transfer_syntaxes: bool = True
    transfer_syntaxes: tuple[str, ...] = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)

    @property
    def accepted_transfer_syntaxes(self) -> tuple[str, ...]:
        """The transfer syntaxes we accept, in our preference order."""
        if self.accept_all_transfer_syntaxes:
            return ALL_TRANSFER_SYNTAXES
        return self.transfer_syntaxes


class TimeoutsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[timeouts]``, all in seconds and > 0.

    Attributes:
        artim: the ARTIM timer (PS3.8 9.1.5): waiting for an A-ASSOCIATE-RQ after
            accepting a connection, for an A-RELEASE-RP, for the peer to close.
        network: silence tolerated on an established association before A-ABORT.
        dimse: waiting for a DIMSE response when we are the SCU.
        connect: TCP connect timeout when we are the requestor.
    """

    artim: float = 30.0
    network: float = 60.0
    dimse: float = 30.0
    connect: float = 10.0


class Peer(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One ``[[peers]]`` entry: a remote application entity.

    Attributes:
        ae_title: its AE title (same rules as ``node.ae_title``), unique among peers.
        host: its host name or address (required).
        port: its port, 1 to 65535 (default 104).
    """

    ae_title: str
    host: str
    port: int = 104


class StoreConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[store]``: how received instances are kept.

    Attributes:
        durability: "strict" (default): a C-STORE success is sent only when the
            file and its index row are on stable storage (fsync of file,
            directory and the index's write-ahead log). "fast": no fsync at all;
            an acknowledged instance can be lost in a power failure or kernel
            crash. Only for load-test sinks: UNSAFE for clinical data.
        flush: how "strict" reaches stable storage. "batch" (default): one
            flush of the data folder's filesystem (Linux syncfs) after each
            group commit covers every file, folder and index page written
            since the last one; where there is no reliable syncfs (not Linux
            5.8+, or a filesystem without it), "file" is used.
            "file": fsync of each file and its folder, and of the index's log
            at each commit; for a data folder that shares its filesystem with
            other busy writers, whose data a batch flush would wait for too.
        duplicates: what a second C-STORE of a SOP Instance UID already held does
            when its content differs (identical content is always a success
            that rewrites nothing): "keep" (default) keeps the instance held and
            answers Success; "replace" stores the new one in its place;
            "reject" answers 0x0111 Duplicate SOP Instance.
        cache_new_files: keep the pages of a newly stored file of 64 KiB or
            more in the page cache once it is durable. false (default): they
            are dropped then, clean, so that ingest reuses that memory instead
            of growing the cache with write-once data; on a virtual machine
            whose host takes free memory back, fresh pages cost a host fault
            each (~1.2 ms of CPU per 0.5 MB file, measured). true: a site that
            reads studies back right after they arrive keeps them cached.
            Only under "strict" (under "fast" the pages are still dirty).
    """

    durability: str = "strict"
    flush: str = "batch"
    duplicates: str = "keep"
    cache_new_files: bool = False


class QueryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[query]``: how the C-FIND SCP matches (PS3.4 C.2.2.2).

    Attributes:
        max_matches: matches one C-FIND may return, >= 0 (0 = unlimited). A
            query matching more ends, after that many pending responses, with
            0xA700 (Refused: Out of Resources) and an error comment, so a
            careless "*" cannot stream the whole archive.
        case_insensitive_names: match Person Name (PN) attributes without
            regard to case. The standard makes PN matching case-sensitive
            (PS3.4 C.2.2.2.1), hence the default false; true is what most
            sites want ("smith" finding "SMITH^JOHN"), and what Orthanc does
            unless its CaseSensitivePN is set.
        match_unknown: an entity whose Required Key (Study Date, Accession
            Number, Patient Name, Modality...) is empty matches any value for
            it, as PS3.4 C.2.2.1.2 requires ("the value is considered
            unknown"); false matches empty values only by universal matching
            (what Orthanc does), so a date range leaves out undated studies.
    """

    max_matches: int = 10000
    case_insensitive_names: bool = False
    match_unknown: bool = True


class RetrieveConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[retrieve]``: how the C-MOVE SCP sends (PS3.4 C.4.2).

    Attributes:
        move_associations: C-STORE sub-operation associations opened in
            parallel to a C-MOVE destination, 1 to 32. Their Maximum Length
            Received is ``association.max_pdu_length``.
        get_window: C-STORE sub-operations of a C-GET we keep in flight at
            once, 1 to 64, when the requestor proposed an Asynchronous
            Operations Window (PS3.7 D.3.3.3) allowing that many; without one,
            one at a time as the standard's default requires.
    """

    move_associations: int = 4
    get_window: int = 4


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole configuration; ``Config()`` is the embedded default."""

    node: NodeConfig = NodeConfig()
    association: AssociationConfig = AssociationConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    store: StoreConfig = StoreConfig()
    query: QueryConfig = QueryConfig()
    retrieve: RetrieveConfig = RetrieveConfig()
    peers: tuple[Peer, ...] = ()

    def peer(self, ae_title: str) -> Peer | None:
        """The peer with this AE title, if configured.

        Exact, case-sensitive match once leading and trailing spaces are
        stripped: PS3.8 9.3.2 makes them insignificant, and an AE title read
        off the wire arrives padded to 16 characters.
        """
        # Configured titles have no such spaces (check_ae_title refuses them).
        wanted = ae_title.strip(" ")
        for peer in self.peers:
            if peer.ae_title == wanted:
                return peer
        return None


# --- loading -------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], *, peers_to_come: bool = False) -> Config:
    """Read, decode and validate the TOML file at ``path``; ``peers_to_come``:
    peers will be added (``--peer``), so none configured is no error yet."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError("", f"cannot read {os.fsdecode(path)}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # TOML 1.0 files are UTF-8 by definition.
        raise ConfigError("", f"{os.fsdecode(path)} is not UTF-8 text ({exc.reason})") from exc
    return parse_config(text, source=os.fsdecode(path), peers_to_come=peers_to_come)


def parse_config(text: str, source: str = "<string>", *, peers_to_come: bool = False) -> Config:
    """Decode and validate TOML ``text``; ``source`` names it in syntax errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML in {source}: {exc}") from exc
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc)) from None
    validate(config, peers_to_come=peers_to_come)
    return config


def with_overrides(
    config: Config,
    *,
    port: int | None = None,
    ae_title: str | None = None,
    data_dir: str | None = None,
    host: str | None = None,
) -> Config:
    """``config`` with command-line values replacing its ``[node]`` ones, validated."""
    changes: dict[str, Any] = {}
    if port is not None:
        changes["port"] = port
    if ae_title is not None:
        changes["ae_title"] = ae_title
    if data_dir is not None:
        changes["data_dir"] = data_dir
    if host is not None:
        changes["host"] = host
    if not changes:
        return config
    new = msgspec.structs.replace(config, node=msgspec.structs.replace(config.node, **changes))
    validate(new)
    return new


# --- msgspec errors into plain words -----------------------------------------------

_TYPE_WORDS: Final = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean (true or false)",
    "array": "an array",
    "object": "a table",
    "null": "nothing",
    "datetime": "a date-time",
    "date": "a date",
    "time": "a time",
}
_WRONG_TYPE = re.compile(r"Expected `(\w+)`, got `(\w+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`")
_MISSING = re.compile(r"Object missing required field `(.*)`")
_SECTIONS: Final[dict[str, type[msgspec.Struct]]] = {
    "": Config,
    "node": NodeConfig,
    "association": AssociationConfig,
    "timeouts": TimeoutsConfig,
    "store": StoreConfig,
    "query": QueryConfig,
    "retrieve": RetrieveConfig,
    "peers": Peer,
}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _translate(message: str) -> ConfigError:
    """Turn a msgspec ValidationError message into a ConfigError (key, problem)."""
    text, _, where = message.partition(" - at `")
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    if match := _WRONG_TYPE.fullmatch(text):
        expected, got = match.groups()
        return ConfigError(
            path,
            f"expected {_TYPE_WORDS.get(expected, expected)}, got {_TYPE_WORDS.get(got, got)}",
        )
    if match := _UNKNOWN.fullmatch(text):
        section = _SECTIONS.get(re.sub(r"\[\d+\]$", "", path))
        hint = f" (known keys: {', '.join(section.__struct_fields__)})" if section else ""
        return ConfigError(_join(path, match.group(1)), f"unknown key{hint}")
    if match := _MISSING.fullmatch(text):
        return ConfigError(_join(path, match.group(1)), "missing (this key is required)")
    return ConfigError(path, text[:1].lower() + text[1:])


# --- semantic validation -----------------------------------------------------------


def validate(config: Config, *, peers_to_come: bool = False) -> None:
    """Check what the types cannot say; raise ConfigError at the first problem.

    ``peers_to_come``: peers will be merged in (``--peer``) and the result
    validated again, so a check that needs peers waits for them.
    """
    node, assoc, timeouts = config.node, config.association, config.timeouts
    check_ae_title("node.ae_title", node.ae_title)
    check_host("node.host", node.host)
    _check_int("node.port", node.port, 0, 65535)
    if not node.data_dir:
        raise ConfigError("node.data_dir", "must not be empty")
    if "\0" in node.data_dir:
        raise ConfigError("node.data_dir", "must not contain a NUL character (\\u0000)")
    _check_choice("node.loop", node.loop, LOOPS)
    _check_int("node.backlog", node.backlog, 1, 65535)
    _check_choice("node.log_level", node.log_level, LOG_LEVELS)
    _check_seconds("node.shutdown_grace", node.shutdown_grace, allow_zero=True)

    for i, title in enumerate(assoc.accepted_calling_aes):
        check_ae_title(f"association.accepted_calling_aes[{i}]", title)
    _check_int("association.max_associations", assoc.max_associations, 1, 1_000_000)
    _check_int("association.max_pdu_length", assoc.max_pdu_length, *MAX_PDU_LENGTH_RANGE)
    if assoc.check_calling_host and not config.peers and not peers_to_come:
        raise ConfigError(
            "association.check_calling_host",
            "is true but no [[peers]] are configured, so every association would be rejected",
        )
    _check_transfer_syntaxes(assoc)

    for key in ("artim", "network", "dimse", "connect"):
        _check_seconds(f"timeouts.{key}", getattr(timeouts, key), allow_zero=False)

    _check_choice("store.durability", config.store.durability, DURABILITIES)
    _check_choice("store.flush", config.store.flush, FLUSHES)
    _check_choice("store.duplicates", config.store.duplicates, DUPLICATE_POLICIES)

    _check_int("query.max_matches", config.query.max_matches, 0, _MAX_MATCHES_LIMIT)
    _check_int(
        "retrieve.move_associations", config.retrieve.move_associations, 1, MAX_MOVE_ASSOCIATIONS
    )
    _check_int("retrieve.get_window", config.retrieve.get_window, 1, MAX_GET_WINDOW)

    seen: dict[str, int] = {}
    for i, peer in enumerate(config.peers):
        check_ae_title(f"peers[{i}].ae_title", peer.ae_title)
        check_host(f"peers[{i}].host", peer.host)
        _check_int(f"peers[{i}].port", peer.port, 1, 65535)
        if peer.ae_title in seen:
            raise ConfigError(
                f"peers[{i}].ae_title",
                f"duplicate AE title {peer.ae_title!r} (also peers[{seen[peer.ae_title]}])",
            )
        seen[peer.ae_title] = i


def check_ae_title(key: str, title: str) -> None:
    """AE title rules of PS3.5 6.2 (VR AE) and PS3.8 9.3.2 (not all spaces)."""
    if not 1 <= len(title) <= 16:
        raise ConfigError(key, f"must be 1 to 16 characters, got {len(title)}")
    if not title.strip(" "):
        raise ConfigError(key, "must not be all spaces")
    if "\\" in title:
        raise ConfigError(key, "must not contain a backslash")
    if any(not " " <= ch <= "~" for ch in title):
        raise ConfigError(
            key, "must use printable ASCII only (the default character repertoire, no controls)"
        )
    if title != title.strip(" "):
        raise ConfigError(
            key, "must not have leading or trailing spaces (they are not significant)"
        )


def check_host(key: str, host: str) -> None:
    """A host name or address as a user may type it: not empty, no spaces."""
    if not host:
        raise ConfigError(key, "must not be empty")
    if any(ch.isspace() for ch in host):
        raise ConfigError(key, "must not contain spaces")


def _check_int(key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high}, got {value}")


def _check_seconds(key: str, value: float, *, allow_zero: bool) -> None:
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number of seconds, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(key, f"must be {bound} seconds, got {value}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}; got {value!r}")


def _check_transfer_syntaxes(assoc: AssociationConfig) -> None:
    known = frozenset(ALL_TRANSFER_SYNTAXES)
    seen: set[str] = set()
    for i, uid in enumerate(assoc.transfer_syntaxes):
        key = f"association.transfer_syntaxes[{i}]"
        if not is_valid_uid(uid):
            raise ConfigError(key, f"{uid!r} is not a valid UID")
        if uid not in known:
            raise ConfigError(key, f"{uid!r} is not a transfer syntax we support")
        if uid in seen:
            raise ConfigError(key, f"{uid!r} is listed twice")
        seen.add(uid)
    if not assoc.accept_all_transfer_syntaxes and not assoc.transfer_syntaxes:
        raise ConfigError(
            "association.transfer_syntaxes",
            "must list at least one transfer syntax when accept_all_transfer_syntaxes is false",
        )
