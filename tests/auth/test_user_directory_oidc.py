"""The user directory with EntraID: sign-ins (bearer tokens, the web sign-in) record people,
and an email Keel has not seen is looked up in Microsoft Graph (the fake tenant of
tests/fakes/fake_graph.py, at the wire)."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import httpx
import pytest

from core.errors import ErrorCode, KeelError
from infra.auth.graph_users import GraphUsers
from infra.db.pool import create_pool
from infra.db.users_repo import UserDirectory
from infra.identity_directory import DirectoryResolver
from infra.redis_client import create_redis
from infra.settings import Settings
from tests.auth.conftest import ADMIN_GROUP, READONLY_GROUP
from tests.auth.test_web_login import _cookie_header, _set_cookies, _sign_in
from tests.conftest import RunningApi
from tests.fakes.oidc_issuer import FakeOidcIssuer
from tests.support.directory import directory_row

ME = "/api/v1/auth/me"


def _email(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}@contoso.example"


@pytest.fixture
async def browser(idp: FakeOidcIssuer) -> AsyncIterator[httpx.AsyncClient]:
    context = ssl.create_default_context(cafile=str(idp.ca_path))
    async with httpx.AsyncClient(verify=context, follow_redirects=False, timeout=30) as client:
        client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        yield client


@pytest.fixture
async def directory(settings: Settings) -> AsyncIterator[UserDirectory]:
    assert settings.database_url
    pool = await create_pool(settings.database_url)
    try:
        yield UserDirectory(pool)
    finally:
        await pool.close()


@pytest.fixture
async def resolver(settings: Settings, directory: UserDirectory) -> AsyncIterator[DirectoryResolver]:
    """The resolver as an integration builds it: Graph from the same settings as group overage."""
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    graph = GraphUsers.from_settings(settings, redis=redis)
    assert graph is not None
    try:
        yield DirectoryResolver(directory, graph)
    finally:
        await graph.aclose()
        await redis.aclose()


# --- sign-ins ---------------------------------------------------------------------------
async def test_a_bearer_sign_in_records_the_user(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.user.email = _email("Ada")
    idp.user.groups = [ADMIN_GROUP, "0000aaaa-0000-4000-8000-000000000001"]
    resp = await api.http.get(ME, headers={"Authorization": f"Bearer {idp.issue()}"})
    assert resp.status_code == 200, resp.text
    row = await directory_row(api.settings, idp.user.oid)
    assert row is not None
    assert (row["email"], row["email_normalized"]) == (idp.user.email, idp.user.email.lower())
    assert (row["display_name"], row["groups"], row["roles"]) == (
        idp.user.name,
        idp.user.groups,
        ["OrgAdmin"],
    )
    assert (row["source"], row["active"]) == ("oidc", True)
    assert row["last_sign_in_at"] is not None


async def test_the_web_sign_in_always_records(
    api: RunningApi, idp: FakeOidcIssuer, browser: httpx.AsyncClient
) -> None:
    idp.user.email = _email("grace")
    idp.user.groups = [READONLY_GROUP]
    done = await _sign_in(api, browser)
    assert done.status_code == 303, done.text
    first = await directory_row(api.settings, idp.user.oid)
    assert first is not None
    assert (first["source"], first["email"], first["roles"]) == ("session", idp.user.email, ["ReadOnly"])

    session = _set_cookies(done)["keel_session"].value
    assert (await api.http.get(ME, headers=_cookie_header(session))).status_code == 200
    assert await directory_row(api.settings, idp.user.oid) == first  # the session's requests: throttled

    assert (await _sign_in(api, browser)).status_code == 303  # a new sign-in, within the window
    again = await directory_row(api.settings, idp.user.oid)
    assert again is not None and again["last_sign_in_at"] > first["last_sign_in_at"]


async def test_guests_and_apps_are_not_recorded(api: RunningApi, idp: FakeOidcIssuer) -> None:
    home = "https://sts.windows.net/72f988bf-0000-4000-8000-000000000000/"
    guest_claims: tuple[dict[str, Any], ...] = (
        {"idp": home},
        {"acct": 1},
        {"preferred_username": "ann_fabrikam.com#EXT#@contoso.example"},
    )
    for claims in guest_claims:
        idp.user.oid = str(uuid.uuid4())
        resp = await api.http.get(ME, headers={"Authorization": f"Bearer {idp.issue(**claims)}"})
        assert resp.status_code == 200, resp.text  # a guest may use Keel…
        assert await directory_row(api.settings, idp.user.oid) is None  # …but is not in the directory
    idp.user.oid = str(uuid.uuid4())
    member = idp.issue(idp=idp.issuer, tid=idp.tenant_id, acct=0)
    assert (await api.http.get(ME, headers={"Authorization": f"Bearer {member}"})).status_code == 200
    assert await directory_row(api.settings, idp.user.oid) is not None

    sp = "5a5a5a5a-0000-4000-8000-0000000000d1"
    app_token = idp.issue(omit=("scp",), oid=sp, sub=sp, roles=["ReadOnly"])
    resp = await api.http.get(ME, headers={"Authorization": f"Bearer {app_token}"})
    assert resp.json()["auth_method"] == "service_principal"
    assert await directory_row(api.settings, sp) is None


# --- resolve_email through Graph ----------------------------------------------------------
async def test_an_unknown_email_found_in_graph_is_stored(
    resolver: DirectoryResolver, directory: UserDirectory, idp: FakeOidcIssuer, settings: Settings
) -> None:
    email = _email("Linus")
    groups = ["0000aaaa-0000-4000-8000-00000000000a", ADMIN_GROUP, "0000aaaa-0000-4000-8000-00000000000b"]
    person = idp.add_graph_user(mail=email, upn=_email("lt"), name="Linus T", groups=groups)
    resolution = await resolver.resolve_email(email.upper())
    assert resolution.status == "found" and resolution.user is not None
    user = resolution.user
    assert (user.user_id, user.email, user.display_name, user.source) == (
        person.id,
        email,
        "Linus T",
        "graph",
    )
    assert user.groups == tuple(groups)  # getMemberObjects, two ids a page
    assert user.roles == ("OrgAdmin",)  # KEEL_ROLE_MAPPING of those groups; no app roles from Graph
    assert user.last_sign_in_at is None and user.active
    row = await directory_row(settings, person.id)
    assert row is not None and row["source"] == "graph"
    [query] = idp.graph_user_queries
    assert query.filter == f"mail eq '{email.lower()}' or userPrincipalName eq '{email.lower()}'"
    assert query.select == "id,displayName,mail,userPrincipalName,accountEnabled,userType"

    again = await resolver.resolve_email(email)  # now from the directory
    assert again.status == "found" and again.user == user
    assert len(idp.graph_user_queries) == 1


async def test_found_by_user_principal_name(resolver: DirectoryResolver, idp: FakeOidcIssuer) -> None:
    upn = _email("upn")
    person = idp.add_graph_user(mail=None, upn=upn)
    resolution = await resolver.resolve_email(upn)
    assert resolution.user is not None and (resolution.user.user_id, resolution.user.email) == (
        person.id,
        upn,
    )


@pytest.mark.parametrize(
    ("kind", "status"), [({"user_type": "Guest"}, "guest"), ({"account_enabled": False}, "disabled")]
)
async def test_graph_guests_and_disabled_accounts_are_refused(
    resolver: DirectoryResolver,
    directory: UserDirectory,
    idp: FakeOidcIssuer,
    kind: dict[str, Any],
    status: str,
) -> None:
    email = _email("refused")
    person = idp.add_graph_user(mail=email, **kind)
    resolution = await resolver.resolve_email(email)
    assert resolution.status == status and resolution.user is None
    assert await directory.by_id(person.id) is None  # never stored


async def test_an_email_nobody_has_is_unknown(resolver: DirectoryResolver, idp: FakeOidcIssuer) -> None:
    idp.add_graph_user(mail=_email("someone-else"))
    assert (await resolver.resolve_email(_email("nobody"))).status == "unknown"
    assert len(idp.graph_user_queries) == 1


async def test_two_people_for_one_email_is_unknown(resolver: DirectoryResolver, idp: FakeOidcIssuer) -> None:
    email = _email("shared")
    idp.add_graph_user(mail=email, upn=_email("a"))
    idp.add_graph_user(mail=_email("b"), upn=email)
    assert (await resolver.resolve_email(email)).status == "unknown"  # Keel does not guess


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_graph_failure_raises_not_unknown(
    resolver: DirectoryResolver, idp: FakeOidcIssuer, status: int
) -> None:
    email = _email("outage")
    idp.add_graph_user(mail=email)
    idp.graph_users_status = status
    with pytest.raises(KeelError) as raised:
        await resolver.resolve_email(email)
    assert raised.value.code == ErrorCode.UPSTREAM_UNAVAILABLE and raised.value.retryable
    idp.graph_users_status = None
    assert (await resolver.resolve_email(email)).status == "found"  # the retry succeeds


async def test_a_quote_in_the_email_is_escaped(resolver: DirectoryResolver, idp: FakeOidcIssuer) -> None:
    email = f"o'brien+{uuid.uuid4().hex[:6]}@contoso.example"
    person = idp.add_graph_user(mail=email)
    resolution = await resolver.resolve_email(email)
    assert resolution.user is not None and resolution.user.user_id == person.id
    [query] = idp.graph_user_queries
    doubled = email.replace("'", "''")
    assert query.filter == f"mail eq '{doubled}' or userPrincipalName eq '{doubled}'"
    assert "'" not in query.raw_query and " " not in query.raw_query and "+" not in query.raw_query


async def test_graph_wants_the_app_token(idp: FakeOidcIssuer) -> None:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(idp.ca_path))) as http:
        query = {"$filter": "mail eq 'a@b.c' or userPrincipalName eq 'a@b.c'", "$select": "id"}
        for headers in ({}, {"Authorization": f"Bearer {idp.issue()}"}):  # none; a user's token
            resp = await http.get(f"{idp.root_url}/v1.0/users", params=query, headers=headers)
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"


async def test_graph_does_not_override_a_sign_in(
    api: RunningApi, resolver: DirectoryResolver, idp: FakeOidcIssuer
) -> None:
    """Signed in with the UPN; Slack knows the mail: Graph finds the same object id, and the
    entry keeps the sign-in's groups and roles (app roles are not in Graph)."""
    idp.user.email = _email("upn-signin")
    idp.user.roles = ["DeptAdmin"]
    idp.user.groups = []
    assert (await api.http.get(ME, headers={"Authorization": f"Bearer {idp.issue()}"})).status_code == 200
    mail = _email("mail")
    idp.add_graph_user(mail=mail, upn=idp.user.email, user_id=idp.user.oid, groups=[READONLY_GROUP])
    resolution = await resolver.resolve_email(mail)
    assert resolution.user is not None
    user = resolution.user
    assert (user.user_id, user.email, user.roles, user.groups) == (idp.user.oid, mail, ("DeptAdmin",), ())
    assert user.source == "oidc" and user.last_sign_in_at is not None
