"""The user directory with dev tokens and API keys: who is recorded, how often, and
looking people up by email without Microsoft Graph (dev mode). The OIDC side (EntraID
tokens, web sign-in, Graph) is tests/auth/test_user_directory_oidc.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.models.directory import DirectoryUser
from core.models.principal import Principal
from infra.auth.dev_tokens import issue_dev_token
from infra.db.pool import create_pool
from infra.db.users_repo import UserDirectory
from infra.identity_directory import DirectoryResolver
from infra.redis_client import create_redis
from infra.settings import Settings
from tests.conftest import RunningApi
from tests.support.directory import directory_row

ME = "/api/v1/auth/me"
WINDOW_S = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return Settings(**{**settings.model_dump(), "directory_record_interval_s": WINDOW_S})


@pytest.fixture
async def directory(settings: Settings) -> AsyncIterator[UserDirectory]:
    assert settings.database_url
    pool = await create_pool(settings.database_url)
    try:
        yield UserDirectory(pool)
    finally:
        await pool.close()


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _me(api: RunningApi, token: str) -> None:
    resp = await api.http.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text


async def _throttled(settings: Settings, user_id: str) -> bool:
    """Whether the user's throttle key is in Redis."""
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    try:
        return bool(await redis.exists(f"keel:directory:seen:{user_id}"))
    finally:
        await redis.aclose()


async def _ttl(settings: Settings, user_id: str) -> int:
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    try:
        return int(await redis.ttl(f"keel:directory:seen:{user_id}"))
    finally:
        await redis.aclose()


async def test_a_dev_token_request_records_the_user_once_per_window(api: RunningApi) -> None:
    user_id = _uid("dir-dev")
    token = await api.token(
        user_id, email="Ada.Lovelace@Example.TEST", display_name="Ada", groups=["g-eng"], roles=["TeamLead"]
    )
    assert await directory_row(api.settings, user_id) is None  # issuing a token is not a sign-in
    await _me(api, token)
    first = await directory_row(api.settings, user_id)
    assert first is not None
    assert first["email"] == "Ada.Lovelace@Example.TEST"
    assert first["email_normalized"] == "ada.lovelace@example.test"
    assert (first["display_name"], first["groups"], first["roles"]) == ("Ada", ["g-eng"], ["TeamLead"])
    assert (first["source"], first["active"]) == ("dev", True)
    assert first["last_sign_in_at"] is not None

    # within the window, the same identity: no write
    await _me(api, token)
    assert await directory_row(api.settings, user_id) == first

    # another identity (a new token with other groups and roles) records at once
    other = await api.token(user_id, email="ada.lovelace@example.test", groups=["g-eng", "g-ops"])
    await _me(api, other)
    second = await directory_row(api.settings, user_id)
    assert second is not None and second["updated_at"] > first["updated_at"]
    assert (second["groups"], second["roles"], second["display_name"]) == (["g-eng", "g-ops"], [], None)
    await _me(api, other)
    assert await directory_row(api.settings, user_id) == second
    await _me(api, token)  # and back: the latest sign-in is what the directory holds
    third = await directory_row(api.settings, user_id)
    assert third is not None and third["roles"] == ["TeamLead"]
    await _me(api, token)
    assert await directory_row(api.settings, user_id) == third

    # after the window, the same token records again
    for _ in range(50):
        if not await _throttled(api.settings, user_id):
            break
        await asyncio.sleep(0.2)
    await _me(api, token)
    after = await directory_row(api.settings, user_id)
    assert after is not None
    assert after["last_sign_in_at"] > third["last_sign_in_at"]
    assert after["created_at"] == first["created_at"]


async def test_an_api_key_request_records_nobody(api: RunningApi) -> None:
    owner = _uid("dir-key")
    headers = await api.auth(owner)
    created = await api.http.post(
        "/api/v1/api-keys", headers=headers, json={"name": "ci", "scopes": ["query_kb"]}
    )
    assert created.status_code == 201, created.text
    assert await directory_row(api.settings, owner) is not None  # the owner's own sign-in
    conn = await asyncpg.connect(str(api.settings.database_url))
    try:
        await conn.execute("DELETE FROM user_directory WHERE user_id = $1", owner)
    finally:
        await conn.close()
    resp = await api.http.get(ME, headers={"Authorization": f"Bearer {created.json()['key']}"})
    assert resp.status_code == 200 and resp.json()["auth_method"] == "api_key"
    assert await directory_row(api.settings, owner) is None


async def test_a_failed_record_does_not_fail_the_request(api: RunningApi) -> None:
    """Postgres refuses a NUL in text: the request still answers; the same identity tries
    again after a short back-off (not on every request), a good sign-in records at once."""
    user_id = _uid("dir-nul")
    principal = Principal(user_id=user_id, email="nul@example.test", display_name="bad\x00name")
    token = issue_dev_token(principal, secret=api.settings.secret_key.get_secret_value(), ttl_s=600)
    await _me(api, token)
    assert await directory_row(api.settings, user_id) is None
    assert 0 < await _ttl(api.settings, user_id) <= WINDOW_S
    await _me(api, await api.token(user_id, email="nul@example.test", display_name="good name"))
    row = await directory_row(api.settings, user_id)
    assert row is not None and row["display_name"] == "good name"


async def test_resolve_email_without_graph(api: RunningApi, directory: UserDirectory) -> None:
    resolver = DirectoryResolver(directory, None)
    user_id = _uid("dir-res")
    email = f"{user_id}@Example.test"
    await _me(api, await api.token(user_id, email=email, groups=["g-approvers"], roles=["DeptAdmin"]))

    found = await resolver.resolve_email(f"  {email.upper()} ")
    assert found.status == "found" and found.user is not None
    assert (found.user.user_id, found.user.email, found.user.source) == (user_id, email, "dev")
    principal = found.user.principal()
    assert (principal.auth_method, principal.groups, principal.roles) == (
        "slack",
        ("g-approvers",),
        ("DeptAdmin",),
    )

    unknown = await resolver.resolve_email(f"nobody-{uuid.uuid4().hex[:8]}@example.test")
    assert unknown.status == "unknown" and unknown.user is None
    assert (await resolver.resolve_email("")).status == "unknown"

    # an inactive entry is refused
    await directory.upsert_from_graph(
        DirectoryUser(
            user_id=_uid("dir-off"), email=f"off-{user_id}@example.test", source="graph", active=False
        )
    )
    disabled = await resolver.resolve_email(f"OFF-{user_id}@example.test")
    assert disabled.status == "disabled" and disabled.user is None


async def test_an_email_belongs_to_the_latest_sign_in(api: RunningApi, directory: UserDirectory) -> None:
    email = f"moved-{uuid.uuid4().hex[:8]}@example.test"
    old, new = _uid("dir-old"), _uid("dir-new")
    await _me(api, await api.token(old, email=email))
    await _me(api, await api.token(new, email=email.upper()))
    holder = await directory.by_email(email)
    assert holder is not None and holder.user_id == new
    previous = await directory.by_id(old)
    assert previous is not None and previous.email is None


async def test_in_group_lists_active_members(api: RunningApi, directory: UserDirectory) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    a, b, c = _uid("dir-a"), _uid("dir-b"), _uid("dir-c")
    await _me(api, await api.token(a, email=f"{a}@example.test", groups=[group, "other"]))
    await _me(api, await api.token(b, email=f"{b}@example.test", groups=[group]))
    await _me(api, await api.token(c, email=f"{c}@example.test", groups=["other"]))
    await directory.upsert_from_graph(
        DirectoryUser(user_id=_uid("dir-gone"), groups=(group,), source="graph", active=False)
    )
    members = await directory.in_group(group)
    assert [m.user_id for m in members] == [b, a]  # most recent sign-in first; inactive left out
    assert [m.user_id for m in await directory.in_group(group, limit=1)] == [b]
