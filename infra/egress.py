"""Resolve a tool server's host and apply the egress rule (``core.policy.egress``).

Call :func:`resolve_and_check` right before opening a connection to an
admin-registered URL (``infra.mcp_client.McpToolClient(url_guard=...)`` does it
for every new session). A check made at registration time alone is not enough:
DNS answers change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from core.policy.egress import EgressRefused, check_tool_url, split_tool_url

__all__ = ["EgressRefused", "resolve_and_check", "resolve_host"]


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


async def resolve_and_check(url: str, *, allowed_hosts: Sequence[str] = ()) -> None:
    """Raise :class:`EgressRefused` unless every address of ``url``'s host may be reached.

    Scheme and userinfo are checked before any DNS query. A resolution failure
    raises ``OSError``.
    """
    host, port = split_tool_url(url)
    check_tool_url(url, resolved_ips=await resolve_host(host, port), allowed_hosts=allowed_hosts)
