"""EntraID / OIDC token verification and claim mapping.

Validation (access tokens and the web sign-in's ID tokens):

* the header's ``alg`` must be one of ``KEEL_OIDC_ALGORITHMS`` (asymmetric
  only: ``none`` and ``HS*`` never verify), checked before any key lookup;
* the key comes from the IdP's JWKS by ``kid`` (:mod:`infra.auth.jwks`), and
  must be of the same algorithm;
* ``iss`` in :attr:`Settings.resolved_oidc_issuers`, ``aud`` in
  :attr:`Settings.resolved_oidc_audiences` (ID tokens: our client id),
  ``exp``/``iat``/``iss``/``aud`` required, ``nbf`` honoured, with
  ``KEEL_OIDC_LEEWAY_S`` of clock skew; ``oid`` or ``sub`` required.

Expired tokens answer ``token_expired``; every other failure ``invalid_token``
with a short message (the reason goes to the log, not to the caller).

Claims → :class:`Principal`: ``user_id`` = ``oid`` else ``sub``; email from
``email`` / ``preferred_username`` / ``upn``; name from ``name``; groups from
``groups`` (or Microsoft Graph on group overage); roles = the Keel roles among
the ``roles`` claim (app roles) plus ``KEEL_ROLE_MAPPING[group]`` per group.
Guest (B2B) accounts are marked (``Principal.guest``: not recorded in the user
directory). Client-credentials tokens (``idtyp: app``; or, where that optional claim is
not configured, no ``scp`` and ``oid == sub``) are service principals: they act
with their app roles only, and one without any Keel app role is refused.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import jwt
import redis.asyncio as aioredis
import structlog

from core.errors import ErrorCode, KeelError
from core.models.principal import Principal
from core.policy.permissions import ROLE_PERMISSIONS
from infra.auth.graph import GraphGroupResolver, signals_group_overage
from infra.auth.jwks import JwksCache, UnknownSigningKey
from infra.auth.msal_app import HTTP_TIMEOUT_S, LazyMsalApp, msal_configured
from infra.auth.web_login import WebSignIn
from infra.settings import Settings

log = structlog.get_logger(__name__)

_MAX_TOKEN_CHARS = 16_384
_MAX_KID_CHARS = 256
_MAX_ID_CHARS = 256
_MAX_GROUP_CHARS = 128


def _invalid() -> KeelError:
    return KeelError(ErrorCode.INVALID_TOKEN, "the access token is not valid")


def oidc_http_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client for JWKS and Graph calls (trusts ``KEEL_OIDC_CA_BUNDLE`` when set)."""
    verify: bool | ssl.SSLContext = True
    if settings.oidc_ca_bundle is not None:
        verify = ssl.create_default_context(cafile=str(settings.oidc_ca_bundle))
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, verify=verify, follow_redirects=False)


def is_app_token(claims: Mapping[str, Any]) -> bool:
    """EntraID's signals for an app-only (client credentials) token."""
    idtyp = claims.get("idtyp")
    if idtyp == "app":
        return True
    if idtyp == "user" or "scp" in claims:
        return False
    oid = claims.get("oid")
    return isinstance(oid, str) and bool(oid) and oid == claims.get("sub")


def is_guest_account(claims: Mapping[str, Any]) -> bool:
    """EntraID's signals for a guest (B2B) account: the optional ``acct`` claim (0 member,
    1 guest) when present; else, in an EntraID token (it has ``tid``), an ``idp`` (who
    authenticated the user) other than the tenant's issuer, or ``#EXT#`` in the user
    principal name. Other providers' tokens (no ``tid``) are members."""
    acct = claims.get("acct")
    if acct in (0, "0"):
        return False
    if acct in (1, "1"):
        return True
    tenant = claims.get("tid")
    if not isinstance(tenant, str) or not tenant:
        return False
    idp = claims.get("idp")
    if isinstance(idp, str) and idp and idp not in {claims.get("iss"), f"https://sts.windows.net/{tenant}/"}:
        return True
    names = (claims.get(c) for c in ("upn", "unique_name", "preferred_username"))
    return any(isinstance(n, str) and "#EXT#" in n.upper() for n in names)


def _str_claim(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:_MAX_ID_CHARS]
    return None


def _str_list(value: Any, *, max_chars: int) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and 0 < len(v) <= max_chars]


class OidcVerifier:
    """Verifies EntraID / OIDC tokens; owns the JWKS cache, Graph lookups and web sign-in.

    Takes ownership of ``http`` (closed by :meth:`aclose`).
    """

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient, redis: aioredis.Redis) -> None:
        jwks_url = settings.resolved_oidc_jwks_url
        if not jwks_url:
            raise ValueError("OIDC needs KEEL_OIDC_JWKS_URL or KEEL_ENTRA_TENANT_ID")
        self._settings = settings
        self._http = http
        self.jwks = JwksCache(
            http,
            jwks_url,
            cache_s=settings.oidc_jwks_cache_s,
            min_refresh_s=settings.oidc_jwks_min_refresh_s,
        )
        self.graph: GraphGroupResolver | None = None
        self.sign_in: WebSignIn | None = None
        if msal_configured(settings):
            self.graph = GraphGroupResolver(
                settings, http=http, redis=redis, msal_app=LazyMsalApp(settings, keep_tokens=True)
            )
            self.sign_in = WebSignIn(
                settings,
                redis=redis,
                msal_app=LazyMsalApp(settings, keep_tokens=False),
                verify_id_token=self.verify_id_token,
            )

    async def verify(self, token: str) -> Principal:
        """An access token (a person's delegated token, or a service principal's app token)."""
        claims = await self._decode(token, audiences=self._settings.resolved_oidc_audiences)
        return await self._principal(claims, allow_app=True)

    async def verify_id_token(self, id_token: str) -> Principal:
        """The web sign-in's ID token (audience: our client id); always a person."""
        client_id = self._settings.entra_client_id
        if not client_id:
            raise _invalid()
        claims = await self._decode(id_token, audiences=[client_id])
        return await self._principal(claims, allow_app=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- validation ----------------------------------------------------------
    async def _decode(self, token: str, *, audiences: Sequence[str]) -> dict[str, Any]:
        settings = self._settings
        if len(token) > _MAX_TOKEN_CHARS:
            raise _invalid()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _invalid() from exc
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in settings.oidc_algorithms:
            log.info("oidc.token_rejected", reason="algorithm", alg=str(alg)[:20])
            raise _invalid()
        if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_CHARS):
            raise _invalid()
        try:
            key = await self.jwks.key_for(kid, alg)
        except UnknownSigningKey as exc:
            log.info("oidc.token_rejected", reason="unknown_key", kid=str(kid)[:64])
            raise _invalid() from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=list(settings.resolved_oidc_issuers),
                leeway=settings.oidc_leeway_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise KeelError(ErrorCode.TOKEN_EXPIRED, "the access token has expired") from exc
        except jwt.PyJWTError as exc:
            log.info("oidc.token_rejected", reason=type(exc).__name__)
            raise _invalid() from exc
        return claims

    # --- claims → Principal --------------------------------------------------
    async def _principal(self, claims: Mapping[str, Any], *, allow_app: bool) -> Principal:
        user_id = _str_claim(claims, "oid", "sub")
        if user_id is None:
            log.info("oidc.token_rejected", reason="no_subject")
            raise _invalid()
        app_roles = sorted({r for r in _str_list(claims.get("roles"), max_chars=64) if r in ROLE_PERMISSIONS})
        if allow_app and is_app_token(claims):
            if not app_roles:
                raise KeelError(ErrorCode.FORBIDDEN, "this application holds no Keel app role")
            return Principal(
                user_id=user_id,
                display_name=_str_claim(claims, "app_displayname", "azp", "appid"),
                roles=tuple(app_roles),
                auth_method="service_principal",
            )
        groups = await self._groups(claims, user_id)
        mapping = self._settings.role_mapping
        roles = set(app_roles) | {mapping[g] for g in groups if g in mapping}
        return Principal(
            user_id=user_id,
            email=_str_claim(claims, "email", "preferred_username", "upn"),
            display_name=_str_claim(claims, "name"),
            groups=tuple(groups),
            roles=tuple(sorted(roles)),
            auth_method="oidc",
            guest=is_guest_account(claims),
        )

    async def _groups(self, claims: Mapping[str, Any], user_id: str) -> list[str]:
        if "groups" in claims:
            return _str_list(claims.get("groups"), max_chars=_MAX_GROUP_CHARS)
        if not signals_group_overage(claims):
            return []
        object_id = _str_claim(claims, "oid")
        if self.graph is None or object_id is None:
            log.warning(
                "oidc.group_overage_unresolved",
                user_id=user_id,
                why="set KEEL_ENTRA_CLIENT_ID and a client secret or certificate to read groups from Graph",
            )
            return []
        return await self.graph.groups_of(object_id)
