"""Resolve a tool server's host and apply the egress rule (``core.policy.egress``).

Call :func:`resolve_and_check` right before opening a connection to an
admin-registered URL (``infra.mcp_client.McpToolClient(url_guard=...)`` does it
for every new session). A check made at registration time alone is not enough:
DNS answers change. Nor is a check followed by the HTTP client's own lookup (DNS
rebinding: the second answer may be ``127.0.0.1``), so :func:`resolve_and_check`
returns the addresses it checked and the client connects to those alone.

``resolver`` is the port for DNS (tests pass their own, the way a rebinding
resolver answers); the default is the system resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from core.policy.egress import EgressRefused, check_tool_url, split_tool_url

__all__ = ["EgressRefused", "Resolver", "resolve_and_check", "resolve_host"]

#: ``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a numeric host is returned as is, without DNS).

    Raises ``OSError`` (``socket.gaierror``) when resolution fails: a transient
    condition, unlike :class:`EgressRefused`.
    """
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve_and_check(
    url: str, *, allowed_hosts: Sequence[str] = (), resolver: Resolver = resolve_host
) -> list[str]:
    """The addresses of ``url``'s host, each checked; connect to these and no others.

    Raises :class:`EgressRefused` unless every address may be reached. Scheme and
    userinfo are checked before any DNS query. A resolution failure raises ``OSError``.
    """
    host, port = split_tool_url(url)
    addresses = await resolver(host, port)
    check_tool_url(url, resolved_ips=addresses, allowed_hosts=allowed_hosts)
    return addresses
