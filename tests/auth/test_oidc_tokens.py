"""EntraID / OIDC access tokens end to end: a local issuer signs them, the API verifies them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import time
from typing import Any

import httpx
import pytest

from tests.auth.conftest import ADMIN_GROUP, READONLY_GROUP
from tests.conftest import RunningApi
from tests.fakes.oidc_issuer import FakeOidcIssuer, new_signing_key

ME = "/api/v1/auth/me"
ADMIN_ROUTE = "/api/v1/admin/failed-operations"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def _me(api: RunningApi, token: str) -> httpx.Response:
    return await api.http.get(ME, headers=_bearer(token))


def _error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# --- accepted ---------------------------------------------------------------------
async def test_v2_access_token_is_accepted(api: RunningApi, idp: FakeOidcIssuer) -> None:
    resp = await _me(api, idp.issue())
    assert resp.status_code == 200, resp.text
    me = resp.json()
    assert me["user_id"] == idp.user.oid
    assert me["email"] == idp.user.email
    assert me["name"] == idp.user.name
    assert me["auth_method"] == "oidc"
    assert me["roles"] == ["User"]
    assert "use_agent" in me["permissions"]
    assert "manage_tools" not in me["permissions"]


async def test_v1_access_token_is_accepted(api: RunningApi, idp: FakeOidcIssuer) -> None:
    token = idp.issue(version=1)
    claims = json.loads(_unb64(token.split(".")[1]))
    assert claims["ver"] == "1.0" and claims["aud"] == f"api://{idp.client_id}" and "upn" in claims
    resp = await _me(api, token)
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == idp.user.oid
    assert resp.json()["email"] == idp.user.email  # from upn


async def test_sub_is_the_user_id_when_there_is_no_oid(api: RunningApi, idp: FakeOidcIssuer) -> None:
    resp = await _me(api, idp.issue(omit=("oid",), sub="pairwise-subject-1"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == "pairwise-subject-1"


# --- rejected ---------------------------------------------------------------------
def _alg_none(idp: FakeOidcIssuer) -> str:
    valid = idp.issue()
    _, payload, _ = valid.split(".")
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": idp.active_key.kid}).encode())
    return f"{header}.{payload}."


def _hs256_with_public_key(idp: FakeOidcIssuer) -> str:
    """The classic key-confusion attack: HMAC-sign with the RSA public key (PEM) as the secret."""
    _, payload, _ = idp.issue().split(".")
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": idp.active_key.kid}).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(idp.active_key.public_pem, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _unknown_kid(idp: FakeOidcIssuer) -> str:
    return idp.issue(key=new_signing_key())


def _published_kid_wrong_key(idp: FakeOidcIssuer) -> str:
    return idp.issue(key=new_signing_key(), kid=idp.active_key.kid)


def _tampered_payload(idp: FakeOidcIssuer) -> str:
    header, payload, signature = idp.issue().split(".")
    claims = json.loads(_unb64(payload))
    claims["roles"] = ["OrgAdmin"]
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _expired(idp: FakeOidcIssuer) -> str:
    now = int(time.time())
    return idp.issue(iat=now - 7200, nbf=now - 7200, exp=now - 3600)


def _not_yet_valid(idp: FakeOidcIssuer) -> str:
    now = int(time.time())
    return idp.issue(nbf=now + 3600, exp=now + 7200)


REJECTED: dict[str, tuple[Any, str]] = {
    "expired": (_expired, "token_expired"),
    "not_yet_valid": (_not_yet_valid, "invalid_token"),
    "wrong_issuer": (lambda idp: idp.issue(iss="https://login.example.test/other/v2.0"), "invalid_token"),
    "wrong_audience": (lambda idp: idp.issue(aud="api://someone-else"), "invalid_token"),
    "alg_none": (_alg_none, "invalid_token"),
    "hs256_with_public_key": (_hs256_with_public_key, "invalid_token"),
    "unknown_kid": (_unknown_kid, "invalid_token"),
    "published_kid_wrong_key": (_published_kid_wrong_key, "invalid_token"),
    "tampered_payload": (_tampered_payload, "invalid_token"),
    "no_exp": (lambda idp: idp.issue(omit=("exp",)), "invalid_token"),
    "no_subject": (lambda idp: idp.issue(omit=("oid", "sub")), "invalid_token"),
    "not_a_jwt": (lambda idp: "not.a.jwt", "invalid_token"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
async def test_bad_tokens_are_rejected(api: RunningApi, idp: FakeOidcIssuer, case: str) -> None:
    make, code = REJECTED[case]
    assert (await _me(api, idp.issue())).status_code == 200  # the setup itself accepts good tokens
    resp = await _me(api, make(idp))
    assert resp.status_code == 401, resp.text
    assert _error_code(resp) == code
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# --- key rotation -------------------------------------------------------------------
@pytest.mark.oidc_settings(oidc_jwks_min_refresh_s=0)
async def test_key_rotation_refetches_the_jwks(api: RunningApi, idp: FakeOidcIssuer) -> None:
    before = idp.issue()
    assert (await _me(api, before)).status_code == 200
    assert idp.jwks_requests == 1
    assert (await _me(api, idp.issue())).status_code == 200
    assert idp.jwks_requests == 1  # cached

    idp.rotate()
    after = idp.issue()
    resp = await _me(api, after)
    assert resp.status_code == 200, resp.text
    assert idp.jwks_requests == 2  # the unknown kid made the API refetch once
    assert (await _me(api, after)).status_code == 200
    assert idp.jwks_requests == 2
    # the retired key no longer verifies anything
    assert (await _me(api, before)).status_code == 401


@pytest.mark.oidc_settings(oidc_jwks_min_refresh_s=3600)
async def test_unknown_kids_cannot_hammer_the_idp(api: RunningApi, idp: FakeOidcIssuer) -> None:
    assert (await _me(api, idp.issue())).status_code == 200
    assert idp.jwks_requests == 1
    for _ in range(3):
        resp = await _me(api, idp.issue(kid=secrets.token_hex(8)))
        assert resp.status_code == 401
    assert idp.jwks_requests == 1  # within the min-refresh interval: no refetch


# --- roles and permissions ------------------------------------------------------------
async def test_mapped_admin_group_reaches_admin_routes(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.user.groups = ["0000aaaa-1111-2222-3333-444455556666", ADMIN_GROUP]
    token = idp.issue()
    me = (await _me(api, token)).json()
    assert me["roles"] == ["OrgAdmin"]
    assert me["groups"] == idp.user.groups
    assert "manage_tools" in me["permissions"]
    resp = await api.http.get(ADMIN_ROUTE, headers=_bearer(token))
    assert resp.status_code == 200, resp.text


async def test_plain_user_is_refused_admin_routes(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.user.groups = ["0000aaaa-1111-2222-3333-444455556666"]
    resp = await api.http.get(ADMIN_ROUTE, headers=_bearer(idp.issue()))
    assert resp.status_code == 403, resp.text
    assert _error_code(resp) == "forbidden"


async def test_app_roles_and_mapped_groups_combine(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.user.roles = ["DeptAdmin", "NotAKeelRole"]
    idp.user.groups = [READONLY_GROUP]
    me = (await _me(api, idp.issue())).json()
    assert me["roles"] == ["DeptAdmin", "ReadOnly"]
    assert "view_audit_logs" in me["permissions"]
    assert "manage_tools" not in me["permissions"]


async def test_read_only_group_only_queries(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.user.groups = [READONLY_GROUP]
    token = idp.issue()
    assert (await _me(api, token)).json()["permissions"] == ["query_kb"]
    resp = await api.http.post("/api/v1/chat", headers=_bearer(token), json={"message": "hi"})
    assert resp.status_code == 403
    assert _error_code(resp) == "forbidden"


# --- service principals -------------------------------------------------------------
async def _client_credentials_token(idp: FakeOidcIssuer) -> str:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(idp.ca_path))) as http:
        resp = await http.post(
            f"{idp.root_url}/{idp.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
                "scope": f"api://{idp.client_id}/.default",
            },
        )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


async def test_service_principal_acts_with_its_app_roles(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.client_app_roles = ["OrgAdmin"]
    token = await _client_credentials_token(idp)
    me = (await _me(api, token)).json()
    assert me["auth_method"] == "service_principal"
    assert me["user_id"] == idp.service_principal_oid
    assert me["roles"] == ["OrgAdmin"]
    assert (await api.http.get(ADMIN_ROUTE, headers=_bearer(token))).status_code == 200


async def test_service_principal_without_app_role_is_refused(api: RunningApi, idp: FakeOidcIssuer) -> None:
    token = await _client_credentials_token(idp)  # client_app_roles is empty
    resp = await _me(api, token)
    assert resp.status_code == 403
    assert _error_code(resp) == "forbidden"


async def test_a_reader_app_role_is_not_an_admin(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.client_app_roles = ["ReadOnly"]
    token = await _client_credentials_token(idp)
    assert (await _me(api, token)).json()["permissions"] == ["query_kb"]
    assert (await api.http.get(ADMIN_ROUTE, headers=_bearer(token))).status_code == 403


# --- group overage ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["v2_claim_names", "v1_hasgroups"])
async def test_group_overage_is_resolved_through_graph_and_cached(
    api: RunningApi, idp: FakeOidcIssuer, shape: str
) -> None:
    member_of = [f"0000aaaa-0000-4000-8000-00000000000{i}" for i in range(4)] + [ADMIN_GROUP]
    idp.graph_groups[idp.user.oid] = member_of
    idp.user.groups = None  # too many to fit: the token leaves them out
    if shape == "v2_claim_names":
        token = idp.issue(
            _claim_names={"groups": "src1"},
            _claim_sources={"src1": {"endpoint": f"https://graph.windows.net/t/users/{idp.user.oid}"}},
        )
    else:
        token = idp.issue(version=1, hasgroups=True)

    resp = await _me(api, token)
    assert resp.status_code == 200, resp.text
    me = resp.json()
    assert me["groups"] == member_of
    assert me["roles"] == ["OrgAdmin"]
    assert idp.graph_requests == 3  # five ids, two per page
    app_tokens = [r for r in idp.token_requests if r.get("grant_type") == "client_credentials"]
    assert len(app_tokens) == 1

    again = await _me(api, idp.issue(_claim_names={"groups": "src1"}))
    assert again.json()["groups"] == member_of
    assert idp.graph_requests == 3  # served from the Redis cache


async def test_no_overage_no_graph_call(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.user.groups = []
    assert (await _me(api, idp.issue())).json()["groups"] == []
    assert idp.graph_requests == 0


async def test_app_token_without_idtyp_is_recognised(api: RunningApi, idp: FakeOidcIssuer) -> None:
    """Where the optional ``idtyp`` claim is not configured: no ``scp`` and ``oid == sub``."""
    sp = "5a5a5a5a-0000-4000-8000-000000000001"
    token = idp.issue(omit=("scp", "name"), oid=sp, sub=sp, roles=["ReadOnly"], groups=[ADMIN_GROUP])
    me = (await _me(api, token)).json()
    assert me["auth_method"] == "service_principal"
    assert me["user_id"] == sp
    assert me["roles"] == ["ReadOnly"]  # app roles only: group mapping does not apply to apps
    assert me["groups"] == []


async def test_idp_outage_answers_503_not_401(api: RunningApi, idp: FakeOidcIssuer) -> None:
    idp.jwks_unavailable = True
    resp = await _me(api, idp.issue())
    assert resp.status_code == 503
    assert _error_code(resp) == "upstream_unavailable"
    assert "Retry-After" in resp.headers
