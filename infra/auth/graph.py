"""Group overage: a user's group object ids from Microsoft Graph, cached in Redis.

EntraID leaves the ``groups`` claim out of a token when the user is in more
groups than fit (200 in a JWT) and signals it instead: ``_claim_names``
containing ``groups`` (v2 and v1), or ``hasgroups: true`` (v1 implicit flow).
Keel then asks Graph, as the application itself (client credentials through
MSAL, application permission ``GroupMember.Read.All``):

    POST {KEEL_GRAPH_BASE_URL}/v1.0/users/{oid}/getMemberObjects
    {"securityEnabledOnly": false}

following ``@odata.nextLink`` (POSTed with the same body, only on the Graph host)
and caches the ids for ``KEEL_GRAPH_GROUPS_CACHE_S`` under
``keel:graph:groups:{oid}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import redis.asyncio as aioredis
import structlog

from core.errors import ErrorCode, KeelError
from infra.auth.msal_app import LazyMsalApp
from infra.settings import Settings

log = structlog.get_logger(__name__)

_CACHE_PREFIX = "keel:graph:groups:"
_MAX_PAGES = 100
_MAX_ID_CHARS = 128


def signals_group_overage(claims: Mapping[str, Any]) -> bool:
    """True when the token left its groups out because there are too many."""
    if "groups" in claims:
        return False
    claim_names = claims.get("_claim_names")
    if isinstance(claim_names, dict) and "groups" in claim_names:
        return True
    return claims.get("hasgroups") is True or claims.get("hasgroups") == "true"


class GraphGroupResolver:
    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient,
        redis: aioredis.Redis,
        msal_app: LazyMsalApp,
    ) -> None:
        self._settings = settings
        self._http = http
        self._redis = redis
        self._msal_app = msal_app
        self._base = settings.graph_base_url.rstrip("/")
        # https://graph.microsoft.com/.default, or a national cloud's Graph
        self._scope = f"{self._base}/.default"

    async def groups_of(self, object_id: str) -> list[str]:
        """The group (and directory role) object ids ``object_id`` is a member of."""
        cache_s = self._settings.graph_groups_cache_s
        key = _CACHE_PREFIX + object_id
        if cache_s > 0:
            cached = await self._redis.get(key)
            if cached is not None:
                return [str(g) for g in json.loads(cached)]
        try:
            groups = await self._fetch(object_id)
        except (httpx.HTTPError, ValueError, OSError) as exc:  # OSError: MSAL's requests
            log.warning("oidc.graph_groups_failed", object_id=object_id, error=str(exc))
            raise KeelError(
                ErrorCode.UPSTREAM_UNAVAILABLE, "group membership cannot be read from Microsoft Graph"
            ) from exc
        if cache_s > 0:
            await self._redis.set(key, json.dumps(groups), ex=cache_s)
        log.info("oidc.graph_groups_fetched", object_id=object_id, count=len(groups))
        return groups

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    @property
    def base_url(self) -> str:
        """``KEEL_GRAPH_BASE_URL`` without a trailing slash."""
        return self._base

    async def app_token(self) -> str:
        """Keel's own Graph token (client credentials; MSAL reuses it until it nears expiry)."""
        app = await self._msal_app.get()
        result: dict[str, Any] = await asyncio.to_thread(app.acquire_token_for_client, [self._scope])
        token = result.get("access_token")
        if not isinstance(token, str):
            raise ValueError(f"no app token for Graph: {result.get('error')}")
        return token

    async def _fetch(self, object_id: str) -> list[str]:
        token = await self.app_token()
        url: str | None = f"{self._base}/v1.0/users/{quote(object_id, safe='')}/getMemberObjects"
        groups: list[str] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                return groups
            self._check_same_host(url)
            response = await self._http.post(
                url,
                json={"securityEnabledOnly": False},
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            response.raise_for_status()
            page = response.json()
            values = page.get("value") if isinstance(page, dict) else None
            if not isinstance(values, list):
                raise ValueError("unexpected getMemberObjects response")
            groups.extend(str(v) for v in values if isinstance(v, str) and 0 < len(v) <= _MAX_ID_CHARS)
            next_link = page.get("@odata.nextLink")
            url = next_link if isinstance(next_link, str) and next_link else None
        raise ValueError("too many getMemberObjects pages")

    def _check_same_host(self, url: str) -> None:
        base, target = urlsplit(self._base), urlsplit(url)
        if (base.scheme, base.netloc) != (target.scheme, target.netloc):
            raise ValueError("@odata.nextLink points outside KEEL_GRAPH_BASE_URL")
