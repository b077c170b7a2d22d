"""Configuration: defaults, decoding, every validation error's key and problem, overrides."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from archive import config as cfg
from archive.config import (
    AssociationConfig,
    Config,
    NodeConfig,
    Peer,
    QueryConfig,
    RetrieveConfig,
    TimeoutsConfig,
    load_config,
    parse_config,
    with_overrides,
)
from archive.dicom import uids
from archive.errors import ConfigError
from archive.node import Storage
from archive.peers import merge_peers, parse_peer, resolve_peer

FULL = """\
[node]
ae_title = "STORE SCP"
host = "127.0.0.1"
port = 4242
data_dir = "/var/lib/archive"
loop = "uvloop"
backlog = 64
log_level = "DEBUG"
shutdown_grace = 2.5

[association]
check_called_ae = false
accepted_calling_aes = ["MODALITY1", "PACS2"]
check_calling_host = true
max_associations = 10
max_pdu_length = 262144
accept_all_transfer_syntaxes = false
transfer_syntaxes = ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2"]

[timeouts]
artim = 5
network = 120.5
dimse = 15.0
connect = 3.0

[query]
max_matches = 0
case_insensitive_names = true
match_unknown = false

[retrieve]
move_associations = 32
get_window = 64

[[peers]]
ae_title = "PACS2"
host = "10.0.0.5"
port = 104

[[peers]]
ae_title = "MODALITY1"
host = "ct1.example.org"
"""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value


def test_defaults() -> None:
    config = Config()
    assert config.node == NodeConfig(
        ae_title="ARCHIVE",
        host="0.0.0.0",
        port=11112,
        data_dir="./data",
        loop="auto",
        backlog=1024,
        log_level="INFO",
        shutdown_grace=10.0,
    )
    assert config.association == AssociationConfig(
        check_called_ae=True,
        accepted_calling_aes=(),
        check_calling_host=False,
        max_associations=200,
        max_pdu_length=262144,
        accept_all_transfer_syntaxes=True,
        transfer_syntaxes=(uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE),
    )
    assert config.timeouts == TimeoutsConfig(artim=30.0, network=60.0, dimse=30.0, connect=10.0)
    assert config.query == QueryConfig(
        max_matches=10000, case_insensitive_names=False, match_unknown=True
    )
    assert config.retrieve == RetrieveConfig(move_associations=4, get_window=4)
    assert config.peers == ()
    assert config.association.accepted_transfer_syntaxes == uids.ALL_TRANSFER_SYNTAXES
    cfg.validate(config)  # the embedded default is itself valid
    assert parse_config("") == config


def test_module_docstring_example_is_the_default_plus_one_peer() -> None:
    assert cfg.__doc__ is not None
    example = cfg.__doc__.split("::\n", 1)[1]
    text = "\n".join(line.removeprefix("    ") for line in example.splitlines())
    assert parse_config(text) == Config(peers=(Peer(ae_title="PACS2", host="10.0.0.5", port=104),))


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "archive.toml"
    path.write_text(FULL, encoding="utf-8")
    config = load_config(path)
    assert config == Config(
        node=NodeConfig(
            ae_title="STORE SCP",
            host="127.0.0.1",
            port=4242,
            data_dir="/var/lib/archive",
            loop="uvloop",
            backlog=64,
            log_level="DEBUG",
            shutdown_grace=2.5,
        ),
        association=AssociationConfig(
            check_called_ae=False,
            accepted_calling_aes=("MODALITY1", "PACS2"),
            check_calling_host=True,
            max_associations=10,
            max_pdu_length=262144,
            accept_all_transfer_syntaxes=False,
            transfer_syntaxes=("1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2"),
        ),
        timeouts=TimeoutsConfig(artim=5.0, network=120.5, dimse=15.0, connect=3.0),
        query=QueryConfig(max_matches=0, case_insensitive_names=True, match_unknown=False),
        retrieve=RetrieveConfig(move_associations=32, get_window=64),
        peers=(
            Peer(ae_title="PACS2", host="10.0.0.5", port=104),
            Peer(ae_title="MODALITY1", host="ct1.example.org", port=104),
        ),
    )
    assert isinstance(config.timeouts.artim, float)
    assert config.association.accepted_transfer_syntaxes == (
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2",
    )
    assert config.peer("MODALITY1") == config.peers[1]
    assert config.peer("NOBODY") is None
    # round trip through builtins (what a TOML writer would see) and back
    assert msgspec.convert(msgspec.to_builtins(config), Config) == config
    assert load_config(str(path)) == config


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.node = NodeConfig()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.node.port = 1  # type: ignore[misc]


# --- file and syntax errors ----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == ""
    assert info.value.problem == f"cannot read {path}: No such file or directory"
    assert str(info.value) == info.value.problem
    assert info.value.code == "config.invalid"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.key == ""
    assert info.value.problem.startswith(f"cannot read {tmp_path}: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[node]\nae_title = "CAF\xc9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == ""
    assert info.value.problem == f"{path} is not UTF-8 text (invalid continuation byte)"


def test_bad_toml_syntax_names_line_and_column() -> None:
    error = _error("[node]\nport 11112\n")
    assert error.key == ""
    assert error.problem == (
        "invalid TOML in <string>: Expected '=' after a key in a key/value pair "
        "(at line 2, column 6)"
    )


def test_bad_toml_names_the_source(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[node\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problem.startswith(f"invalid TOML in {path}: ")


# --- type and shape errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[node]\nport = "11112"', "node.port", "expected an integer, got a string"),
        ("[node]\nport = 1.5", "node.port", "expected an integer, got a number"),
        ("[node]\nport = true", "node.port", "expected an integer, got a boolean (true or false)"),
        ("[node]\nae_title = 7", "node.ae_title", "expected a string, got an integer"),
        ('[timeouts]\nartim = "30"', "timeouts.artim", "expected a number, got a string"),
        (
            "[association]\ncheck_called_ae = 1",
            "association.check_called_ae",
            "expected a boolean (true or false), got an integer",
        ),
        (
            '[association]\naccepted_calling_aes = "A"',
            "association.accepted_calling_aes",
            "expected an array, got a string",
        ),
        (
            '[association]\naccepted_calling_aes = ["A", 2]',
            "association.accepted_calling_aes[1]",
            "expected a string, got an integer",
        ),
        ("node = 1", "node", "expected a table, got an integer"),
        (
            '[[peers]]\nae_title = "A"\nhost = "h"\nport = "x"',
            "peers[0].port",
            "expected an integer, got a string",
        ),
        ("[node]\ndata_dir = 1979-05-27", "node.data_dir", "expected a string, got a date"),
        ('peers = {ae_title = "A"}', "peers", "expected an array, got a table"),
        (
            '[query]\ncase_insensitive_names = "yes"',
            "query.case_insensitive_names",
            "expected a boolean (true or false), got a string",
        ),
        ("[query]\nmax_matches = 1.5", "query.max_matches", "expected an integer, got a number"),
        (
            "[store]\ncache_new_files = 1",
            "store.cache_new_files",
            "expected a boolean (true or false), got an integer",
        ),
        (
            "[query]\nlimit = 5",
            "query.limit",
            "unknown key (known keys: max_matches, case_insensitive_names, match_unknown)",
        ),
        (
            "[retrieve]\nmax_pdu_length = 65536",
            "retrieve.max_pdu_length",
            "unknown key (known keys: move_associations, get_window)",
        ),
    ],
)
def test_wrong_type(text: str, key: str, problem: str) -> None:
    error = _error(text)
    assert (error.key, error.problem) == (key, problem)
    assert str(error) == f"{key}: {problem}"


def test_unknown_top_level_key() -> None:
    error = _error("[nodes]\nport = 1\n")
    assert error.key == "nodes"
    assert error.problem == (
        "unknown key (known keys: node, association, timeouts, store, query, retrieve, peers)"
    )


def test_unknown_section_key() -> None:
    error = _error("[timeouts]\nidle = 3\n")
    assert error.key == "timeouts.idle"
    assert error.problem == "unknown key (known keys: artim, network, dimse, connect)"


def test_unknown_peer_key_names_the_entry() -> None:
    error = _error(
        '[[peers]]\nae_title = "A"\nhost = "h"\n[[peers]]\nae_title = "B"\nhost = "h"\ntls = true\n'
    )
    assert error.key == "peers[1].tls"
    assert error.problem == "unknown key (known keys: ae_title, host, port)"


def test_peer_missing_required_key() -> None:
    error = _error('[[peers]]\nae_title = "A"\n')
    assert (error.key, error.problem) == ("peers[0].host", "missing (this key is required)")


# --- semantic errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[node]\nae_title = ""', "node.ae_title", "must be 1 to 16 characters, got 0"),
        (
            '[node]\nae_title = "ABCDEFGHIJKLMNOPQ"',
            "node.ae_title",
            "must be 1 to 16 characters, got 17",
        ),
        ('[node]\nae_title = "    "', "node.ae_title", "must not be all spaces"),
        ('[node]\nae_title = "A\\\\B"', "node.ae_title", "must not contain a backslash"),
        (
            '[node]\nae_title = "A\\tB"',
            "node.ae_title",
            "must use printable ASCII only (the default character repertoire, no controls)",
        ),
        (
            '[node]\nae_title = "CAFÉ"',
            "node.ae_title",
            "must use printable ASCII only (the default character repertoire, no controls)",
        ),
        (
            '[node]\nae_title = " ARCHIVE"',
            "node.ae_title",
            "must not have leading or trailing spaces (they are not significant)",
        ),
        ('[node]\nhost = ""', "node.host", "must not be empty"),
        ('[node]\nhost = "a b"', "node.host", "must not contain spaces"),
        ("[node]\nport = -1", "node.port", "must be between 0 and 65535, got -1"),
        ("[node]\nport = 65536", "node.port", "must be between 0 and 65535, got 65536"),
        ('[node]\ndata_dir = ""', "node.data_dir", "must not be empty"),
        (
            '[node]\ndata_dir = "a\\u0000b"',
            "node.data_dir",
            "must not contain a NUL character (\\u0000)",
        ),
        (
            '[node]\nloop = "trio"',
            "node.loop",
            "must be one of auto, asyncio, uvloop; got 'trio'",
        ),
        ("[node]\nbacklog = 0", "node.backlog", "must be between 1 and 65535, got 0"),
        (
            '[node]\nlog_level = "info"',
            "node.log_level",
            "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got 'info'",
        ),
        ("[node]\nshutdown_grace = -1", "node.shutdown_grace", "must be >= 0 seconds, got -1.0"),
        (
            "[node]\nshutdown_grace = inf",
            "node.shutdown_grace",
            "must be a finite number of seconds, got inf",
        ),
        (
            '[association]\naccepted_calling_aes = ["OK", ""]',
            "association.accepted_calling_aes[1]",
            "must be 1 to 16 characters, got 0",
        ),
        (
            "[association]\nmax_associations = 0",
            "association.max_associations",
            "must be between 1 and 1000000, got 0",
        ),
        (
            "[association]\nmax_pdu_length = 0",
            "association.max_pdu_length",
            "must be between 4096 and 16777216, got 0",
        ),
        (
            "[association]\nmax_pdu_length = 4095",
            "association.max_pdu_length",
            "must be between 4096 and 16777216, got 4095",
        ),
        (
            "[association]\nmax_pdu_length = 16777217",
            "association.max_pdu_length",
            "must be between 4096 and 16777216, got 16777217",
        ),
        (
            "[association]\ncheck_calling_host = true",
            "association.check_calling_host",
            "is true but no [[peers]] are configured, so every association would be rejected",
        ),
        (
            '[association]\ntransfer_syntaxes = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.94"]',
            "association.transfer_syntaxes[1]",
            "'1.2.840.10008.1.2.4.94' is not a transfer syntax we support",
        ),
        (
            '[association]\ntransfer_syntaxes = ["1.2.840.10008.1.2."]',
            "association.transfer_syntaxes[0]",
            "'1.2.840.10008.1.2.' is not a valid UID",
        ),
        (
            '[association]\ntransfer_syntaxes = ["1.2.840.10008.1.2", "1.2.840.10008.1.2"]',
            "association.transfer_syntaxes[1]",
            "'1.2.840.10008.1.2' is listed twice",
        ),
        (
            "[association]\naccept_all_transfer_syntaxes = false\ntransfer_syntaxes = []",
            "association.transfer_syntaxes",
            "must list at least one transfer syntax when accept_all_transfer_syntaxes is false",
        ),
        ("[timeouts]\nartim = 0", "timeouts.artim", "must be > 0 seconds, got 0.0"),
        ("[timeouts]\nnetwork = -5", "timeouts.network", "must be > 0 seconds, got -5.0"),
        (
            "[timeouts]\ndimse = nan",
            "timeouts.dimse",
            "must be a finite number of seconds, got nan",
        ),
        ("[timeouts]\nconnect = 0.0", "timeouts.connect", "must be > 0 seconds, got 0.0"),
        (
            '[[peers]]\nae_title = "A"\nhost = "h"\nport = 0',
            "peers[0].port",
            "must be between 1 and 65535, got 0",
        ),
        ('[[peers]]\nae_title = "A"\nhost = ""', "peers[0].host", "must not be empty"),
        (
            '[[peers]]\nae_title = "ABCDEFGHIJKLMNOPQR"\nhost = "h"',
            "peers[0].ae_title",
            "must be 1 to 16 characters, got 18",
        ),
        (
            '[[peers]]\nae_title = "A"\nhost = "h"\n[[peers]]\nae_title = "B"\nhost = "h"\n'
            '[[peers]]\nae_title = "A"\nhost = "g"',
            "peers[2].ae_title",
            "duplicate AE title 'A' (also peers[0])",
        ),
        (
            "[query]\nmax_matches = -1",
            "query.max_matches",
            "must be between 0 and 2147483647, got -1",
        ),
        (
            "[retrieve]\nmove_associations = 0",
            "retrieve.move_associations",
            "must be between 1 and 32, got 0",
        ),
        (
            "[retrieve]\nmove_associations = 33",
            "retrieve.move_associations",
            "must be between 1 and 32, got 33",
        ),
        (
            "[retrieve]\nget_window = 0",
            "retrieve.get_window",
            "must be between 1 and 64, got 0",
        ),
    ],
)
def test_semantic_error(text: str, key: str, problem: str) -> None:
    error = _error(text)
    assert (error.key, error.problem) == (key, problem)


@pytest.mark.parametrize("title", ["A", "ABCDEFGHIJKLMNOP", "MY AE", "ae-title_1.x", "~!@#$%^&*()"])
def test_good_ae_titles(title: str) -> None:
    assert parse_config(f'[node]\nae_title = "{title}"').node.ae_title == title


def test_listen_port_zero_is_ephemeral() -> None:
    assert parse_config("[node]\nport = 0").node.port == 0


def test_unknown_transfer_syntaxes_rejected_even_when_accepting_all() -> None:
    # A typo in the list is reported even while the list is not in use.
    error = _error('[association]\ntransfer_syntaxes = ["1.2.3"]')
    assert error.key == "association.transfer_syntaxes[0]"


# --- overrides ----------------------------------------------------------------------


def test_overrides_replace_node_values() -> None:
    base = parse_config(FULL)
    new = with_overrides(base, port=0, ae_title="OTHER", data_dir="/tmp/d", host="::")
    assert new.node == msgspec.structs.replace(
        base.node, port=0, ae_title="OTHER", data_dir="/tmp/d", host="::"
    )
    assert new.association == base.association
    assert new.peers == base.peers
    assert base.node.port == 4242  # the original is untouched


def test_no_override_returns_the_same_object() -> None:
    config = Config()
    assert with_overrides(config) is config


@pytest.mark.parametrize(
    ("kwargs", "key", "problem"),
    [
        ({"port": 70000}, "node.port", "must be between 0 and 65535, got 70000"),
        ({"ae_title": "X" * 17}, "node.ae_title", "must be 1 to 16 characters, got 17"),
        ({"data_dir": ""}, "node.data_dir", "must not be empty"),
        ({"host": ""}, "node.host", "must not be empty"),
    ],
)
def test_overrides_are_validated(kwargs: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(Config(), **kwargs)  # type: ignore[arg-type]
    assert (info.value.key, info.value.problem) == (key, problem)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[store]\ndurability = "eventually"\n', "store.durability"),
        ('[store]\nduplicates = "merge"\n', "store.duplicates"),
        ('[store]\nflush = "never"\n', "store.flush"),
    ],
)
def test_store_choices(text: str, key: str) -> None:
    error = _error(text)
    assert error.key == key
    assert error.problem.startswith("must be one of ")


def test_store_defaults() -> None:
    store = Config().store
    assert (store.durability, store.flush, store.duplicates) == ("strict", "batch", "keep")
    assert parse_config('[store]\nflush = "file"\n').store.flush == "file"
    assert store.cache_new_files is False
    assert parse_config("[store]\ncache_new_files = true\n").store.cache_new_files is True


@pytest.mark.parametrize(
    ("text", "dropped"),
    [
        ("", True),
        ("[store]\ncache_new_files = true\n", False),
        ('[store]\ndurability = "fast"\n', False),  # dirty pages: nothing to drop
    ],
)
def test_the_store_drops_new_files_from_the_cache_as_configured(text: str, dropped: bool) -> None:
    assert Storage(parse_config(text)).files.drop_released is dropped


# --- [query], [retrieve] ----------------------------------------------------------


def test_query_retrieve_bounds_accepted() -> None:
    config = parse_config("[query]\nmax_matches = 1\n[retrieve]\nmove_associations = 1\n")
    assert (config.query.max_matches, config.retrieve.move_associations) == (1, 1)


# --- peers: lookup, AET@HOST:PORT, overrides ----------------------------------------

TWO_PEERS = (
    '[[peers]]\nae_title = "PACS2"\nhost = "10.0.0.5"\nport = 104\n'
    '[[peers]]\nae_title = "MY AE"\nhost = "ct1"\nport = 4242\n'
)


def test_peer_lookup_strips_spaces_but_is_exact() -> None:
    config = parse_config(TWO_PEERS)
    assert config.peer("PACS2") == Peer(ae_title="PACS2", host="10.0.0.5", port=104)
    assert config.peer("PACS2           ") is config.peers[0]  # padded as on the wire
    assert config.peer(" MY AE ") is config.peers[1]
    assert config.peer("pacs2") is None  # AE titles are case-sensitive
    assert config.peer("MY") is None
    assert config.peer("") is None


@pytest.mark.parametrize(
    ("text", "peer"),
    [
        ("PACS@10.0.0.5:104", Peer(ae_title="PACS", host="10.0.0.5", port=104)),
        ("ORTHANC@localhost:4242", Peer(ae_title="ORTHANC", host="localhost", port=4242)),
        (
            "MY AE@pacs.example.org:11112",
            Peer(ae_title="MY AE", host="pacs.example.org", port=11112),
        ),
        ("V6@[::1]:104", Peer(ae_title="V6", host="::1", port=104)),
        ("V6@[fe80::1%eth0]:1", Peer(ae_title="V6", host="fe80::1%eth0", port=1)),
        ("A@B@h:65535", Peer(ae_title="A@B", host="h", port=65535)),  # '@' is legal in an AE title
    ],
)
def test_parse_peer(text: str, peer: Peer) -> None:
    assert parse_peer(text) == peer


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("PACS", "'PACS' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): no '@'"),
        ("@h:104", "'@h:104' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): no AE title before '@'"),
        ("A@h", "'A@h' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): no ':PORT'"),
        ("A@:104", "'A@:104' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): no host"),
        ("A@[]:104", "'A@[]:104' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): no host"),
        (
            "A@::1:104",
            "'A@::1:104' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): "
            "put an IPv6 address in brackets",
        ),
        (
            "A@[::1:104",
            "'A@[::1:104' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): "
            "no ']' after the IPv6 address",
        ),
        (
            "A@[::1]104",
            "'A@[::1]104' is not AET@HOST:PORT (IPv6 as AET@[::1]:104): no ':PORT' after ']'",
        ),
        ("A@h:", "'A@h:': port '' is not a number"),
        ("A@h:x1", "'A@h:x1': port 'x1' is not a number"),
        ("A@h:+104", "'A@h:+104': port '+104' is not a number"),
        ("A@h:-1", "'A@h:-1': port '-1' is not a number"),
        ("A@h:0", "'A@h:0': port must be between 1 and 65535, got 0"),
        ("A@h:65536", "'A@h:65536': port must be between 1 and 65535, got 65536"),
        (
            "A@h:\u0661\u0660\u0664",
            "'A@h:\u0661\u0660\u0664': port '\u0661\u0660\u0664' is not a number",
        ),
        ("ABCDEFGHIJKLMNOPQ@h:104", "must be 1 to 16 characters, got 17"),
        (" A@h:104", "must not have leading or trailing spaces (they are not significant)"),
        ("A\\B@h:104", "must not contain a backslash"),
        ("A@a b:104", "must not contain spaces"),
    ],
)
def test_parse_peer_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_peer(text, "--peer")
    assert (info.value.key, info.value.problem) == ("--peer", problem)
    assert str(info.value) == f"--peer: {problem}"


def test_resolve_peer() -> None:
    config = parse_config(TWO_PEERS)
    assert resolve_peer(config, "MY AE") is config.peers[1]
    # AET@HOST:PORT need not be configured, and wins over a configured entry.
    assert resolve_peer(config, "PACS2@127.0.0.1:5") == Peer(
        ae_title="PACS2", host="127.0.0.1", port=5
    )
    with pytest.raises(ConfigError) as info:
        resolve_peer(config, "PACS3")
    assert (info.value.key, info.value.problem) == (
        "peer",
        "'PACS3' is not a configured peer (peers: PACS2, MY AE) "
        "nor AET@HOST:PORT (IPv6 as AET@[::1]:104)",
    )
    with pytest.raises(ConfigError) as info:
        resolve_peer(Config(), "PACS2", "PEER")
    assert str(info.value) == (
        "PEER: 'PACS2' is not a configured peer (peers: none configured) "
        "nor AET@HOST:PORT (IPv6 as AET@[::1]:104)"
    )
    with pytest.raises(ConfigError, match="no ':PORT'"):
        resolve_peer(config, "PACS2@host")


def test_override_peers_append_and_replace() -> None:
    base = parse_config(TWO_PEERS)
    new_pacs2 = Peer(ae_title="PACS2", host="10.9.9.9", port=11112)
    orthanc = Peer(ae_title="ORTHANC", host="127.0.0.1", port=4242)
    assert merge_peers(base, [orthanc])[1] == []
    new, replaced = merge_peers(base, [orthanc, new_pacs2])
    assert replaced == [(base.peers[0], new_pacs2)]
    # replaced in place, new ones appended in the order given
    assert new.peers == (new_pacs2, base.peers[1], orthanc)
    assert new.node == base.node
    assert base.peers[0].host == "10.0.0.5"
    assert merge_peers(Config(), [orthanc])[0].peers == (orthanc,)
    unchanged, replaced = merge_peers(base, ())
    assert unchanged is base
    assert replaced == []


def test_override_peers_twice_on_the_command_line() -> None:
    a = Peer(ae_title="A", host="h", port=1)
    with pytest.raises(ConfigError) as info:
        merge_peers(Config(), [a, Peer(ae_title="A", host="g", port=2)])
    assert (info.value.key, info.value.problem) == (
        "peers",
        "AE title 'A' is given twice on the command line",
    )


def test_override_peers_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        merge_peers(Config(), [Peer(ae_title="A", host="h", port=0)])
    assert (info.value.key, info.value.problem) == (
        "peers[0].port",
        "must be between 1 and 65535, got 0",
    )


def test_override_peers_satisfy_check_calling_host() -> None:
    # check_calling_host without [[peers]] is refused; a --peer makes it valid.
    base = Config(association=AssociationConfig(check_calling_host=True))
    new, _ = merge_peers(base, [Peer(ae_title="A", host="h", port=1)])
    assert new.association.check_calling_host


def test_a_peer_on_the_command_line_satisfies_check_calling_host_in_a_file(
    tmp_path: Path,
) -> None:
    """check_calling_host in a file without [[peers]], the peers given with --peer:
    the file was refused before the peers were added (review). It waits for them
    now, and without any it is still refused."""
    path = tmp_path / "node.toml"
    path.write_text("[association]\ncheck_calling_host = true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "association.check_calling_host"
    config = load_config(path, peers_to_come=True)
    merged, _ = merge_peers(config, [Peer(ae_title="A", host="127.0.0.1", port=104)])
    assert merged.association.check_calling_host
