"""/docs and /redoc work offline: their pages reference only assets the API serves."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.conftest import RunningApi

_URL = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]|spec-url=['"]([^'"]+)['"]""")
_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


async def test_docs_pages_load_only_same_origin_assets(api: RunningApi) -> None:
    for page in ("/docs", "/redoc"):
        resp = await api.http.get(page)
        assert resp.status_code == 200, (page, resp.text)
        assert resp.headers["content-type"].startswith("text/html")
        html = resp.text
        urls = {a or b for a, b in _URL.findall(html)}
        assets = {u for u in urls if urlsplit(u).path.rsplit(".", 1)[-1] in ("js", "css", "png")}
        assert assets, (page, urls)
        assert "//" not in html.replace("http://www.w3.org", ""), f"{page} names another origin"
        for url in urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, (page, url)
            answer = await api.http.get(url)
            assert answer.status_code == 200, (page, url, answer.status_code)
            suffix = "." + parts.path.rsplit(".", 1)[-1]
            if suffix in _TYPES:
                assert _TYPES[suffix] in answer.headers["content-type"], (url, answer.headers["content-type"])
