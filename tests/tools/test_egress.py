"""The egress rule for tool server URLs (core.policy.egress) and its resolver (infra.egress)."""

from __future__ import annotations

import pytest

from core.policy.egress import EgressRefused, check_tool_url, split_tool_url
from infra.egress import resolve_and_check, resolve_host

URL = "https://tools.example.com/mcp"

PUBLIC = [
    "93.184.216.34",
    "2606:4700::1111",
    "8.8.8.8",
    "2a00:1450:4001:81b::200e",
    "64:ff9b::5db8:d822",  # NAT64 (DNS64) for 93.184.216.34
]

REFUSED = {
    # loopback
    "127.0.0.1": "loopback",
    "127.1.2.3": "loopback",
    "::1": "loopback",
    # link-local
    "169.254.10.1": "link-local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    # private
    "10.0.0.5": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.10": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    # unspecified
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    # multicast
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    # reserved / not routable
    "240.0.0.1": "",  # reserved (Python counts 240/4 as private)
    "255.255.255.255": "",
    "100.64.0.1": "not a globally routable",  # CGNAT
    "192.0.2.1": "",  # documentation
    "2001:db8::1": "",  # documentation
    # cloud metadata
    "169.254.169.254": "metadata",
    "fd00:ec2::254": "metadata",
    "100.100.100.200": "metadata",
    # IPv4 embedded in IPv6
    "::ffff:127.0.0.1": "127.0.0.1",
    "::ffff:10.1.2.3": "",
    "::ffff:169.254.169.254": "metadata",
    "64:ff9b::a00:1": "10.0.0.1",  # NAT64
    "2002:c0a8:0101::1": "192.168.1.1",  # 6to4
}


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_are_accepted(ip: str) -> None:
    check_tool_url(URL, resolved_ips=[ip])
    check_tool_url("http://tools.example.com:8080/mcp", resolved_ips=[ip])


@pytest.mark.parametrize(("ip", "reason"), sorted(REFUSED.items()))
def test_refused_addresses(ip: str, reason: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_tool_url(URL, resolved_ips=[ip])
    assert reason in refused.value.reason
    assert isinstance(refused.value, ValueError)


def test_one_bad_address_among_good_ones_is_refused() -> None:
    with pytest.raises(EgressRefused):
        check_tool_url(URL, resolved_ips=["93.184.216.34", "10.0.0.1"])


def test_no_address_is_refused() -> None:
    with pytest.raises(EgressRefused, match="no address"):
        check_tool_url(URL, resolved_ips=[])


def test_unparseable_address_is_refused() -> None:
    with pytest.raises(EgressRefused, match="not an IP address"):
        check_tool_url(URL, resolved_ips=["example.com"])


@pytest.mark.parametrize(
    "url",
    [
        "ftp://tools.example.com/mcp",
        "file:///etc/passwd",
        "gopher://tools.example.com/",
        "ws://tools.example.com/mcp",
        "tools.example.com/mcp",
        "javascript:alert(1)",
    ],
)
def test_non_http_schemes_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused, match="scheme"):
        check_tool_url(url, resolved_ips=["93.184.216.34"])


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@tools.example.com/mcp",
        "https://user@tools.example.com/mcp",
        "https://:pass@tools.example.com/mcp",
        "http://tools.example.com@127.0.0.1/mcp",
    ],
)
def test_userinfo_is_refused(url: str) -> None:
    with pytest.raises(EgressRefused, match="credentials"):
        check_tool_url(url, resolved_ips=["93.184.216.34"], allowed_hosts=["127.0.0.1"])


@pytest.mark.parametrize("url", ["http:///mcp", "https://tools.example.com:99999/", "http://[::1/mcp"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        check_tool_url(url, resolved_ips=["93.184.216.34"])


def test_allowed_hosts_skip_the_address_checks() -> None:
    check_tool_url(
        "http://tools.internal:8080/mcp", resolved_ips=["10.0.0.5"], allowed_hosts=["tools.internal"]
    )
    check_tool_url("http://TOOLS.Internal./mcp", resolved_ips=["10.0.0.5"], allowed_hosts=["tools.INTERNAL"])
    check_tool_url("http://127.0.0.1:9000/mcp", resolved_ips=["127.0.0.1"], allowed_hosts=["127.0.0.1"])
    check_tool_url("http://[::1]:9000/mcp", resolved_ips=["::1"], allowed_hosts=["::1"])
    check_tool_url("http://localhost/mcp", resolved_ips=[], allowed_hosts=["localhost"])


def test_allow_list_is_exact() -> None:
    with pytest.raises(EgressRefused):
        check_tool_url(
            "http://evil.tools.internal/mcp", resolved_ips=["10.0.0.5"], allowed_hosts=["tools.internal"]
        )
    with pytest.raises(EgressRefused):
        check_tool_url(
            "http://tools.internal.evil.com/mcp", resolved_ips=["10.0.0.5"], allowed_hosts=["tools.internal"]
        )


@pytest.mark.parametrize(
    "ip", ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254"]
)
def test_metadata_addresses_are_refused_even_when_allowed(ip: str) -> None:
    with pytest.raises(EgressRefused, match="metadata"):
        check_tool_url("http://tools.internal/mcp", resolved_ips=[ip], allowed_hosts=["tools.internal"])


def test_split_tool_url() -> None:
    assert split_tool_url("https://Tools.Example.com/mcp") == ("tools.example.com", 443)
    assert split_tool_url("http://tools.example.com/mcp") == ("tools.example.com", 80)
    assert split_tool_url("http://[2606:4700::1111]:8443/mcp") == ("2606:4700::1111", 8443)


# ------------------------------------------------------------------ infra.egress (no real DNS)


async def test_resolve_numeric_hosts_without_dns() -> None:
    assert await resolve_host("93.184.216.34", 443) == ["93.184.216.34"]
    assert await resolve_host("2606:4700::1111", 443) == ["2606:4700::1111"]
    await resolve_and_check("https://93.184.216.34/mcp")
    await resolve_and_check("https://[2606:4700::1111]:8443/mcp")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/mcp",
        "http://[::1]/mcp",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/mcp",
        "http://[::ffff:127.0.0.1]/mcp",
        "http://localhost:8080/mcp",
    ],
)
async def test_resolve_and_check_refuses(url: str) -> None:
    with pytest.raises(EgressRefused):
        await resolve_and_check(url)


async def test_localhost_resolves_to_loopback_and_can_be_allowed() -> None:
    assert all(ip in ("127.0.0.1", "::1") for ip in await resolve_host("localhost", 80))
    await resolve_and_check("http://localhost:8080/mcp", allowed_hosts=["localhost"])


async def test_scheme_is_checked_before_resolving() -> None:
    with pytest.raises(EgressRefused, match="scheme"):
        await resolve_and_check("ftp://name-that-must-not-be-looked-up.invalid/")
