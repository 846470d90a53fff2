"""SSRF through the admin API: every form of an internal or malformed tool URL is refused.

The red-team pass sent 47 URL forms to ``POST /api/v1/admin/tools``; 45 were refused
and 2 answered 500 (a host that does not resolve, a URL the resolver could not take).
This keeps all of them refused with a 4xx and Keel's error body, and checks that
no refused server was stored.
"""

from __future__ import annotations

import asyncpg

from tests.conftest import RunningApi

FORMS = [
    # loopback, in every spelling
    "http://127.0.0.1/mcp",
    "http://127.1/mcp",
    "http://127.0.0.1:8000/mcp",
    "http://localhost/mcp",
    "http://LOCALHOST./mcp",
    "http://[::1]/mcp",
    "http://[0:0:0:0:0:0:0:1]/mcp",
    "http://[::ffff:127.0.0.1]/mcp",
    "http://[::ffff:7f00:1]/mcp",
    "http://2130706433/mcp",
    "http://0x7f000001/mcp",
    "http://017700000001/mcp",
    "http://0.0.0.0/mcp",
    "http://0/mcp",
    "http://[::]/mcp",
    # cloud metadata
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    # private, shared, link-local, multicast, broadcast, reserved
    "http://10.0.0.1/mcp",
    "http://172.16.0.1/mcp",
    "http://192.168.1.1/mcp",
    "http://100.64.0.1/mcp",
    "http://[fc00::1]/mcp",
    "http://[fe80::1]/mcp",
    "http://224.0.0.1/mcp",
    "http://255.255.255.255/mcp",
    "http://240.0.0.1/mcp",
    "http://198.18.0.1/mcp",
    # other schemes
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "ftp://127.0.0.1/",
    "dict://127.0.0.1:11211/stat",
    "ws://127.0.0.1/mcp",
    "javascript:alert(1)",
    # userinfo and parser confusion
    "http://user:pass@tools.example.com/mcp",
    "http://tools.example.com@127.0.0.1/mcp",
    "http://127.0.0.1#@tools.example.com/mcp",
    "http://127.0.0.1%2f@tools.example.com/mcp",
    "http://127.0.0.1\\@tools.example.com/mcp",
    # malformed, and hosts that do not resolve (the two 500s)
    "http:///mcp",
    "https://tools.example.com:99999/mcp",
    "http://[::1/mcp",
    "http://no-such-host.invalid/mcp",
    "http://a..b/mcp",
    "not a url",
    "",
]


async def test_every_internal_or_malformed_tool_url_is_refused(api: RunningApi, database_url: str) -> None:
    admin = {"Authorization": f"Bearer {await api.token('ssrf-admin', roles=['OrgAdmin'])}"}
    statuses: dict[str, int] = {}
    for n, url in enumerate(FORMS):
        resp = await api.http.post(
            "/api/v1/admin/tools",
            json={"name": f"ssrf-{n}", "transport": "http", "url": url},
            headers=admin,
        )
        statuses[url] = resp.status_code
        assert 400 <= resp.status_code < 500, (url, resp.status_code, resp.text)
        error = resp.json()["error"]
        assert error["code"] in ("policy_denied", "invalid_request"), (url, error)
        assert error["request_id"] == resp.headers["x-request-id"]
        assert "Traceback" not in resp.text and "Error:" not in resp.text, (url, resp.text)
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM tool_servers WHERE name LIKE 'ssrf-%'")
    finally:
        await conn.close()
    assert stored == 0
    assert len(statuses) == len(FORMS) >= 45
