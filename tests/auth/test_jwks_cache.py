"""The JWKS cache against the local issuer, with a hand-driven clock (no sleeping)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from core.errors import ErrorCode, KeelError
from infra.auth.jwks import JwksCache, UnknownSigningKey
from tests.fakes.oidc_issuer import FakeOidcIssuer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _client(idp: FakeOidcIssuer) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(idp.ca_path)))


async def test_cache_expiry_and_rotation(idp: FakeOidcIssuer) -> None:
    clock = Clock()
    async with _client(idp) as http:
        cache = JwksCache(http, idp.jwks_url, cache_s=3600, min_refresh_s=30, clock=clock)
        old = idp.active_key
        assert (await cache.key_for(old.kid, "RS256")).key_id == old.kid
        assert idp.jwks_requests == 1
        clock.now += 3599
        await cache.key_for(old.kid, "RS256")
        assert idp.jwks_requests == 1  # still fresh
        clock.now += 2
        await cache.key_for(old.kid, "RS256")
        assert idp.jwks_requests == 2  # expired: refetched

        new = idp.rotate()
        with pytest.raises(UnknownSigningKey):
            await cache.key_for(new.kid, "RS256")  # 0 s after the last fetch: no refetch yet
        assert idp.jwks_requests == 2
        clock.now += 30
        assert (await cache.key_for(new.kid, "RS256")).key_id == new.kid
        assert idp.jwks_requests == 3
        with pytest.raises(UnknownSigningKey):
            await cache.key_for(old.kid, "RS256")  # retired
        with pytest.raises(UnknownSigningKey):
            await cache.key_for(new.kid, "ES256")  # an RSA key never verifies another algorithm


async def test_unreachable_idp_is_upstream_unavailable_and_not_hammered(idp: FakeOidcIssuer) -> None:
    clock = Clock()
    async with _client(idp) as http:
        cache = JwksCache(http, "https://127.0.0.1:9/keys", cache_s=3600, min_refresh_s=30, clock=clock)
        for _ in range(2):
            with pytest.raises(KeelError) as caught:
                await cache.key_for("any", "RS256")
            assert caught.value.code == ErrorCode.UPSTREAM_UNAVAILABLE
        assert cache.fetch_count == 1  # the second call did not try again within 30 s
        clock.now += 30
        with pytest.raises(KeelError):
            await cache.key_for("any", "RS256")
        assert cache.fetch_count == 2


async def test_keys_held_survive_a_failed_refetch(idp: FakeOidcIssuer) -> None:
    clock = Clock()
    async with _client(idp) as http:
        cache = JwksCache(http, idp.jwks_url, cache_s=3600, min_refresh_s=30, clock=clock)
        kid = idp.active_key.kid
        await cache.key_for(kid, "RS256")
        idp.jwks_unavailable = True  # an IdP outage
        clock.now += 4000
        assert (await cache.key_for(kid, "RS256")).key_id == kid  # stale keys still verify
        assert idp.jwks_requests == 2  # it did try
        assert (await cache.key_for(kid, "RS256")).key_id == kid
        assert idp.jwks_requests == 2  # and does not retry before min_refresh_s
