"""People in EntraID by email, through Microsoft Graph (the user directory's look-up).

As the application itself (the same client-credentials token as group overage,
:class:`GraphGroupResolver`; application permission ``User.Read.All``):

    GET {KEEL_GRAPH_BASE_URL}/v1.0/users
        ?$filter=mail eq '<email>' or userPrincipalName eq '<email>'
        &$select=id,displayName,mail,userPrincipalName,accountEnabled,userType

(the email is an OData string literal: ``'`` doubled, then the whole filter
percent-encoded), then the person's group ids through ``getMemberObjects``
(:meth:`GraphGroupResolver.groups_of`, cached in Redis). Any failure (Graph
unreachable, refusing, answering something unexpected) is ``upstream_unavailable``:
a Graph outage never reads as "nobody has this email".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import redis.asyncio as aioredis
import structlog

from core.errors import ErrorCode, KeelError
from core.models.directory import DirectoryUser, normalize_email
from infra.auth.graph import GraphGroupResolver
from infra.auth.msal_app import LazyMsalApp, msal_configured
from infra.auth.oidc import oidc_http_client
from infra.settings import Settings

log = structlog.get_logger(__name__)

SELECT = "id,displayName,mail,userPrincipalName,accountEnabled,userType"
_MAX_ID_CHARS = 128


def odata_string(value: str) -> str:
    """``value`` as an OData string literal: in quotes, each ``'`` doubled."""
    return "'" + value.replace("'", "''") + "'"


def users_by_email_filter(email: str) -> str:
    literal = odata_string(email)
    return f"mail eq {literal} or userPrincipalName eq {literal}"


def _unavailable() -> KeelError:
    return KeelError(ErrorCode.UPSTREAM_UNAVAILABLE, "people cannot be looked up in Microsoft Graph")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class GraphPerson:
    """A user object as Graph returns it (the selected properties)."""

    id: str
    display_name: str | None
    mail: str | None
    user_principal_name: str | None
    account_enabled: bool | None
    user_type: str | None

    @classmethod
    def from_graph(cls, value: Any) -> GraphPerson | None:
        if not isinstance(value, dict):
            return None
        user_id = value.get("id")
        if not isinstance(user_id, str) or not 0 < len(user_id) <= _MAX_ID_CHARS:
            return None
        enabled = value.get("accountEnabled")
        return cls(
            id=user_id,
            display_name=_text(value.get("displayName")),
            mail=_text(value.get("mail")),
            user_principal_name=_text(value.get("userPrincipalName")),
            account_enabled=enabled if isinstance(enabled, bool) else None,
            user_type=_text(value.get("userType")),
        )

    @property
    def is_guest(self) -> bool:
        return (self.user_type or "").lower() == "guest"

    @property
    def is_enabled(self) -> bool:
        """Only an explicit ``accountEnabled: true`` is enabled."""
        return self.account_enabled is True

    def email_matching(self, normalized: str) -> str | None:
        """The address (``mail``, else ``userPrincipalName``) that equals ``normalized``."""
        for address in (self.mail, self.user_principal_name):
            if address is not None and normalize_email(address) == normalized:
                return address
        return None


class GraphUsers:
    """Look people up in EntraID by email. Build it on an existing
    :class:`GraphGroupResolver` (sharing its HTTP client, MSAL app and token), or
    with :meth:`from_settings`, which owns its HTTP client (close with :meth:`aclose`)."""

    def __init__(self, groups: GraphGroupResolver, *, owns_http: bool = False) -> None:
        self._groups = groups
        self._owns_http = owns_http

    @classmethod
    def from_settings(cls, settings: Settings, *, redis: aioredis.Redis) -> GraphUsers | None:
        """``None`` without client credentials (``KEEL_ENTRA_CLIENT_ID``, a secret or
        certificate, an authority): the same settings group overage needs."""
        if not msal_configured(settings):
            return None
        resolver = GraphGroupResolver(
            settings,
            http=oidc_http_client(settings),
            redis=redis,
            msal_app=LazyMsalApp(settings, keep_tokens=True),
        )
        return cls(resolver, owns_http=True)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._groups.http.aclose()

    async def find_by_email(self, email: str) -> GraphPerson | None:
        """The one user whose ``mail`` or ``userPrincipalName`` is ``email`` (any case).

        ``None`` when there is none, or when two different users match (one by mail,
        another by user principal name): Keel does not guess who is meant.
        Raises ``KeelError(upstream_unavailable)`` when Graph does not answer properly.
        """
        normalized = normalize_email(email)
        if normalized is None or "@" not in normalized:
            return None
        query = f"$filter={quote(users_by_email_filter(normalized), safe='')}&$select={SELECT}"
        values = await self._get_users(f"{self._groups.base_url}/v1.0/users?{query}")
        people = {p.id: p for p in map(GraphPerson.from_graph, values) if p is not None}
        matches = [p for p in people.values() if p.email_matching(normalized) is not None]
        if len(matches) > 1:
            log.warning("directory.graph_email_ambiguous", user_ids=sorted(p.id for p in matches))
            return None
        return matches[0] if matches else None

    async def directory_user(self, person: GraphPerson, *, email: str) -> DirectoryUser:
        """The directory entry for ``person`` found by ``email``: its groups from
        ``getMemberObjects``, its roles what ``KEEL_ROLE_MAPPING`` gives those groups
        (app roles are not read from Graph: they come with the person's first sign-in)."""
        normalized = normalize_email(email) or ""
        groups = await self._groups.groups_of(person.id)
        mapping = self._groups.settings.role_mapping
        return DirectoryUser(
            user_id=person.id,
            email=person.email_matching(normalized) or person.mail or person.user_principal_name,
            display_name=person.display_name,
            groups=tuple(groups),
            roles=tuple(sorted({mapping[g] for g in groups if g in mapping})),
            source="graph",
            active=person.is_enabled and not person.is_guest,
        )

    async def _get_users(self, url: str) -> list[Any]:
        try:
            token = await self._groups.app_token()
            response = await self._groups.http.get(
                url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
            )
        except (httpx.HTTPError, ValueError, OSError) as exc:  # OSError: MSAL's requests
            log.warning("directory.graph_lookup_failed", error=str(exc)[:200])
            raise _unavailable() from exc
        if response.status_code != 200:
            log.warning(
                "directory.graph_lookup_failed", status=response.status_code, error=_graph_error(response)
            )
            raise _unavailable()
        try:
            body = response.json()
        except ValueError as exc:
            raise _unavailable() from exc
        values = body.get("value") if isinstance(body, dict) else None
        if not isinstance(values, list):
            log.warning("directory.graph_lookup_failed", error="no value list in the answer")
            raise _unavailable()
        return values


def _graph_error(response: httpx.Response) -> str:
    """Graph's error code (``Authorization_RequestDenied``, …), for the log."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code)[:80] if code else ""
