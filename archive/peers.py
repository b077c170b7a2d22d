"""Peers from the command line: ``AET@HOST:PORT``, a configured AE title, ``--peer``.

``archive serve --peer`` adds peers to the configured table (:func:`merge_peers`);
every command that talks to a peer takes either form (:func:`resolve_peer`). Each
failure is a :class:`~archive.errors.ConfigError` naming the flag or argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from archive.config import Config, Peer, check_ae_title, check_host, validate
from archive.errors import ConfigError

__all__ = ["PEER_SYNTAX", "merge_peers", "parse_peer", "resolve_peer"]


def merge_peers(config: Config, peers: Sequence[Peer]) -> tuple[Config, list[tuple[Peer, Peer]]]:
    """``config`` with ``peers`` (from ``--peer``) added, validated; and the replaced ones.

    A peer is appended to ``[[peers]]`` unless its AE title is already
    configured: then it REPLACES that entry in place (the command line wins, as
    for every other flag), and the pair (old, new) is in the list returned. The
    same AE title given twice on the command line is an error.
    """
    if not peers:
        return config, []
    merged = list(config.peers)
    position = {peer.ae_title: i for i, peer in enumerate(merged)}
    seen: set[str] = set()
    replaced: list[tuple[Peer, Peer]] = []
    for peer in peers:
        title = peer.ae_title
        if title in seen:
            raise ConfigError("peers", f"AE title {title!r} is given twice on the command line")
        seen.add(title)
        if title in position:
            replaced.append((merged[position[title]], peer))
            merged[position[title]] = peer
        else:
            position[title] = len(merged)
            merged.append(peer)
    new = msgspec.structs.replace(config, peers=tuple(merged))
    validate(new)
    return new, replaced


#: AET@HOST:PORT, HOST either a name / IPv4 address or an IPv6 address in brackets.
PEER_SYNTAX: Final = "AET@HOST:PORT (IPv6 as AET@[::1]:104)"


def parse_peer(text: str, key: str = "peer") -> Peer:
    """Parse ``AET@HOST:PORT`` (an IPv6 host in brackets: ``AET@[::1]:104``).

    The AE title is everything before the LAST ``@`` (an AE title may itself
    contain ``@``, a host name cannot). It follows the ``node.ae_title`` rules,
    the port is 1 to 65535. Raises ConfigError(``key``, problem).
    """
    title, at, address = text.rpartition("@")
    if not at:
        raise ConfigError(key, f"{text!r} is not {PEER_SYNTAX}: no '@'")
    if not title:
        raise ConfigError(key, f"{text!r} is not {PEER_SYNTAX}: no AE title before '@'")
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket:
            raise ConfigError(key, f"{text!r} is not {PEER_SYNTAX}: no ']' after the IPv6 address")
        if not rest.startswith(":"):
            raise ConfigError(key, f"{text!r} is not {PEER_SYNTAX}: no ':PORT' after ']'")
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon:
            raise ConfigError(key, f"{text!r} is not {PEER_SYNTAX}: no ':PORT'")
        if ":" in host:
            raise ConfigError(
                key, f"{text!r} is not {PEER_SYNTAX}: put an IPv6 address in brackets"
            )
    if not host:
        raise ConfigError(key, f"{text!r} is not {PEER_SYNTAX}: no host")
    # int() would take " 104", "+104" and "1_04": only plain ASCII digits are a port.
    if not (port_text.isascii() and port_text.isdigit()):
        raise ConfigError(key, f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    check_ae_title(key, title)
    check_host(key, host)
    if not 1 <= port <= 65535:
        raise ConfigError(key, f"{text!r}: port must be between 1 and 65535, got {port}")
    return Peer(ae_title=title, host=host, port=port)


def resolve_peer(config: Config, text: str, key: str = "peer") -> Peer:
    """What a user typed for a peer: a configured AE title, or ``AET@HOST:PORT``.

    The shared entry of every command that talks to a peer (echo, and the
    find/move/pull commands). Raises ConfigError(``key``, problem) naming the
    configured peers when ``text`` is neither.
    """
    if "@" in text:
        return parse_peer(text, key)
    peer = config.peer(text)
    if peer is not None:
        return peer
    known = ", ".join(p.ae_title for p in config.peers) or "none configured"
    raise ConfigError(key, f"{text!r} is not a configured peer (peers: {known}) nor {PEER_SYNTAX}")
