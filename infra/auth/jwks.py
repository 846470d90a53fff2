"""The identity provider's signing keys (JWKS), fetched over HTTPS and cached.

* The set is cached for ``KEEL_OIDC_JWKS_CACHE_S`` and refetched after that.
* A token whose ``kid`` is not in the cached set (the IdP rotated its keys)
  triggers one refetch, but at most one per ``KEEL_OIDC_JWKS_MIN_REFRESH_S``:
  tokens carrying random ``kid`` values cannot make Keel hammer the IdP.
* Only public signature keys are kept (``kty`` RSA, EC or OKP; ``use`` absent
  or ``sig``): a symmetric ``oct`` key in a JWKS is ignored, so nothing can be
  verified with an HMAC secret taken from the key set.
* When a refetch fails, the keys already held stay in use; with none held the
  caller gets ``upstream_unavailable``. Failed fetches are retried at most
  once per ``KEEL_OIDC_JWKS_MIN_REFRESH_S`` too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import structlog

from core.errors import ErrorCode, KeelError

log = structlog.get_logger(__name__)

_PUBLIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
_MAX_JWKS_BYTES = 512 * 1024


class UnknownSigningKey(Exception):
    """The token names a key the IdP does not publish (after any allowed refetch)."""


class JwksCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        cache_s: float,
        min_refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = url
        self._cache_s = cache_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key for a token header's ``kid`` and ``alg``.

        Raises :class:`UnknownSigningKey` when no published key fits.
        """
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._cache_s:
            await self._refresh(force=False)
        jwk = self._find(kid)
        if jwk is None and self._may_refetch():
            await self._refresh(force=True)
            jwk = self._find(kid)
        if jwk is None:
            raise UnknownSigningKey(kid)
        declared = jwk.get("alg")
        if declared is not None and declared != alg:
            raise UnknownSigningKey(kid)
        try:
            return jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError as exc:  # e.g. an RS256 header naming an EC key
            raise UnknownSigningKey(kid) from exc

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._keys.get(kid)
        if len(self._keys) == 1:  # an IdP with a single key may omit kid
            return next(iter(self._keys.values()))
        return None

    def _may_refetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refresh_s

    async def _refresh(self, *, force: bool) -> None:
        attempts_seen = self.fetch_count
        async with self._lock:
            # Someone else fetched (or tried) while we waited for the lock, or the last
            # attempt failed moments ago: use what is held.
            if self.fetch_count != attempts_seen or not self._may_refetch():
                self._require_keys()
                return
            if (
                not force
                and self._fetched_at is not None
                and self._clock() - self._fetched_at < self._cache_s
            ):
                return
            self._attempted_at = self._clock()
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("oidc.jwks_fetch_failed", url=self._url, error=str(exc))
                self._require_keys()
                return
            self._keys = keys
            self._fetched_at = self._clock()
            log.info("oidc.jwks_fetched", url=self._url, kids=sorted(keys))

    def _require_keys(self) -> None:
        if not self._keys:
            raise KeelError(ErrorCode.UPSTREAM_UNAVAILABLE, "the identity provider's keys cannot be fetched")

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        self.fetch_count += 1
        response = await self._http.get(self._url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > _MAX_JWKS_BYTES:
            raise ValueError("the JWKS document is too large")
        document = response.json()
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            raise ValueError("the JWKS document has no 'keys' list")
        usable = [
            k
            for k in raw_keys
            if isinstance(k, dict) and k.get("kty") in _PUBLIC_KEY_TYPES and k.get("use", "sig") == "sig"
        ]
        try:
            parsed = jwt.PyJWKSet(usable)  # validates every key; skips unusable ones
        except jwt.PyJWTError as exc:
            raise ValueError(f"the JWKS has no usable signing keys: {exc}") from exc
        valid_ids = {k.key_id for k in parsed.keys}
        keys: dict[str, dict[str, Any]] = {}
        for index, k in enumerate(usable):
            kid = k.get("kid")
            if kid in valid_ids or (kid is None and len(usable) == 1):
                keys[str(kid) if kid is not None else f"#{index}"] = k
        return keys
