"""The client's address: the socket peer, or what a trusted proxy says it was.

Only when the peer is inside `server.trusted_proxies` is `X-Forwarded-For`
believed, and then its right-most entry that is not itself a trusted proxy is
the client (entries left of it could have been written by anyone). Logs, rate
limits and the dashboard all use this one answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from aiohttp import web

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLIENT_ADDRESS = web.RequestKey("keel.client_address", str)


def _parse_address(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class ClientAddressResolver:
    """Resolves a request's client address against a set of trusted proxy networks."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies
        )
        # Peers repeat (a proxy, a load balancer): remember each verdict.
        self.is_trusted = lru_cache(maxsize=4096)(self._is_trusted)

    def _is_trusted(self, address: str) -> bool:
        parsed = _parse_address(address)
        return parsed is not None and any(parsed in net for net in self._networks)

    def resolve(self, peer: str | None, forwarded_for: Iterable[str]) -> str:
        """The client address given the socket peer and every `X-Forwarded-For` header value."""
        peer = peer or "unknown"
        if not self.is_trusted(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            address = _parse_address(hop)
            if address is None:
                # Garbage where a proxy should have written an address: stop
                # trusting the chain here and blame the last hop we believed.
                break
            if not self.is_trusted(str(address)):
                return str(address)
            peer = str(address)
        return peer

    def __call__(self, request: web.BaseRequest) -> str:
        # On every request's path: the trust check first, so an untrusted peer
        # costs no header parsing.
        peer = request.remote or "unknown"
        if self.is_trusted(peer):
            return self.resolve(peer, request.headers.getall("X-Forwarded-For", ()))
        return peer


CLIENT_ADDRESSES = web.AppKey("keel.client_addresses", ClientAddressResolver)


def client_address(request: web.Request) -> str:
    """The client's address for `request`, resolved once by the request middleware."""
    return request[CLIENT_ADDRESS]
