"""Where a registered tool server may be reached: the ONE egress rule for tool URLs.

An admin registers a tool server by URL; the platform then connects to it from
inside the cluster. Without a rule that is a server-side request forgery
primitive (cloud metadata credentials, the database, Redis, the Temporal
frontend, anything on loopback). :func:`check_tool_url` refuses:

- schemes other than ``http`` and ``https``;
- userinfo in the URL (``https://user:pass@host``): credentials belong in headers;
- any resolved address that is loopback, link-local, private (RFC 1918,
  ``fc00::/7``), unspecified, multicast, reserved or otherwise not globally
  routable (CGNAT ``100.64/10``, documentation and benchmark ranges), including
  such an IPv4 address embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``,
  NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo). A NAT64 address is
  judged by its IPv4 address alone, so DNS64 answers for public hosts pass;
- a cloud metadata address (``169.254.169.254``, ``fd00:ec2::254``,
  ``100.100.100.200``).

A host listed in ``allowed_hosts`` (exact, case-insensitive, trailing dot
ignored) skips the address checks, which is how an admin registers an
in-cluster tool server on purpose. Metadata addresses are refused even then:
no tool server lives there, and an allow-listed name whose DNS answer changes
to a metadata address must not hand out instance credentials.

Pure: the caller resolves the host (``infra.egress.resolve_and_check``) and
passes every address it got; the check is repeated on each new connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TypeAlias
from urllib.parse import urlsplit

__all__ = ["CLOUD_METADATA_ADDRESSES", "EgressRefused", "check_tool_url", "split_tool_url"]

_IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

CLOUD_METADATA_ADDRESSES: frozenset[_IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)

_ALLOWED_SCHEMES = ("http", "https")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_ULA = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(ValueError):
    """The URL may not be reached from the platform; ``reason`` says why (safe to show an admin)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def split_tool_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of a tool URL after the scheme and userinfo checks.

    The host is lower-case, without IPv6 brackets; the port defaults by scheme.
    Raises :class:`EgressRefused`.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:  # bad port, unbalanced IPv6 brackets, ...
        raise EgressRefused(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise EgressRefused(f"scheme {scheme or '(none)'!r} is not allowed; use http or https")
    if "@" in parts.netloc:
        raise EgressRefused("credentials in the URL (user:password@) are not allowed; use headers")
    host = parts.hostname
    if not host:
        raise EgressRefused("the URL has no host")
    return host, port if port is not None else (443 if scheme == "https" else 80)


def check_tool_url(url: str, *, resolved_ips: Sequence[str], allowed_hosts: Sequence[str] = ()) -> None:
    """Raise :class:`EgressRefused` unless ``url`` may be reached at every one of ``resolved_ips``."""
    host, _port = split_tool_url(url)
    allowed = _normalise_host(host) in {_normalise_host(h) for h in allowed_hosts}
    if not resolved_ips and not allowed:
        raise EgressRefused(f"host {host!r} resolved to no address")
    for raw in resolved_ips:
        address = _parse_address(raw)
        for candidate in _with_embedded_ipv4(address):
            if candidate in CLOUD_METADATA_ADDRESSES:
                raise EgressRefused(f"{raw} is a cloud metadata address")
        if allowed:
            continue
        for candidate in _with_embedded_ipv4(address):
            reason = _refusal(candidate)
            if reason is not None:
                shown = raw if candidate == address else f"{raw} (embeds {candidate})"
                raise EgressRefused(f"host {host!r} resolves to {shown}, {reason}")


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _parse_address(raw: str) -> _IPAddress:
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        raise EgressRefused(f"{raw!r} is not an IP address") from None


def _with_embedded_ipv4(address: _IPAddress) -> Iterable[_IPAddress]:
    """The address itself, then any IPv4 address it carries (mapped, 6to4, Teredo).

    A NAT64 address (``64:ff9b::/96``, what DNS64 hands an IPv6-only cluster)
    stands for its IPv4 address alone and is judged by it.
    """
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64:
        yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        return
    yield address
    if not isinstance(address, ipaddress.IPv6Address):
        return
    if address.ipv4_mapped is not None:
        yield address.ipv4_mapped
    if address.sixtofour is not None:
        yield address.sixtofour
    if address.teredo is not None:
        yield from address.teredo


def _refusal(address: _IPAddress) -> str | None:
    """Why ``address`` is refused, or None for a public unicast address."""
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address in _ULA or any(address in net for net in _RFC1918), "a private address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a globally routable address"),
    )
    for refused, reason in checks:
        if refused:
            return reason
    return None
