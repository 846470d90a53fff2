"""A sliver of Microsoft Graph, served by the fake EntraID (tests/fakes/oidc_issuer.py).

Both endpoints want the issuer's own client-credentials token for Graph (the
``/token`` endpoint's app token with audience ``{root}``), else ``401
InvalidAuthenticationToken``, as Graph answers:

    ``POST {root}/v1.0/users/{oid}/getMemberObjects``   ``graph_groups[oid]``, ``graph_page_size``
            ids per page with ``@odata.nextLink`` paging; 404 for an unknown oid
    ``GET  {root}/v1.0/users?$filter=…&$select=…``      the users of ``add_graph_user`` whose
            ``mail`` or ``userPrincipalName`` equals the filter's literal (any case), shaped
            ``{"@odata.context": …, "value": [...]}`` with the selected properties only; the
            filter must be exactly ``mail eq '<x>' or userPrincipalName eq '<x>'`` with ``'``
            doubled inside the literal (OData), else 400 like Graph. Each query is kept in
            ``graph_user_queries`` (the raw query string and the decoded ``$filter``);
            ``graph_users_status`` makes the endpoint answer that status (an outage).
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

_FILTER = re.compile(r"^mail eq '((?:[^']|'')*)' or userPrincipalName eq '((?:[^']|'')*)'$")
_PROPERTIES = {
    "id": "id",
    "displayName": "display_name",
    "mail": "mail",
    "userPrincipalName": "user_principal_name",
    "accountEnabled": "account_enabled",
    "userType": "user_type",
}


@dataclass
class GraphUserRecord:
    """A user object in the fake tenant."""

    user_principal_name: str
    mail: str | None
    display_name: str = "Grace Hopper"
    user_type: str = "Member"
    account_enabled: bool = True
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class GraphUserQuery:
    raw_query: str
    filter: str | None
    select: str | None


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class FakeGraph:
    """Graph's state and handlers, mixed into the fake issuer (which provides ``_lock``,
    ``root_url`` and ``verify_app_token``)."""

    _lock: threading.Lock

    @property
    def root_url(self) -> str:
        raise NotImplementedError

    def verify_app_token(self, token: str, *, audience: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def reset_graph(self) -> None:
        with self._lock:
            self.graph_groups: dict[str, list[str]] = {}
            self.graph_page_size = 2
            self.graph_requests = 0
            self.graph_users: list[GraphUserRecord] = []
            self.graph_user_queries: list[GraphUserQuery] = []
            #: answer the users query with this status (e.g. 500, 503)
            self.graph_users_status: int | None = None

    def add_graph_user(
        self,
        *,
        mail: str | None,
        upn: str | None = None,
        name: str = "Grace Hopper",
        user_type: str = "Member",
        account_enabled: bool = True,
        groups: list[str] | None = None,
        user_id: str | None = None,
    ) -> GraphUserRecord:
        """A user of the tenant (``upn`` defaults to ``mail``) and its group ids."""
        user = GraphUserRecord(
            user_principal_name=upn or mail or f"{uuid.uuid4().hex[:8]}@example.test",
            mail=mail,
            display_name=name,
            user_type=user_type,
            account_enabled=account_enabled,
        )
        if user_id is not None:
            user.id = user_id
        with self._lock:
            self.graph_users.append(user)
            self.graph_groups[user.id] = list(groups or [])
        return user

    def _graph_authorized(self, authorization: str | None) -> bool:
        token = (authorization or "").removeprefix("Bearer ").strip()
        return bool(token) and self.verify_app_token(token, audience=self.root_url) is not None

    def _graph_member_objects(self, oid: str, skip: int, authorization: str | None) -> Response:
        with self._lock:
            self.graph_requests += 1
        if not self._graph_authorized(authorization):
            return _error(401, "InvalidAuthenticationToken", "Access token is invalid.")
        groups = self.graph_groups.get(oid)
        if groups is None:
            return _error(404, "Request_ResourceNotFound", oid)
        page = groups[skip : skip + self.graph_page_size]
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)",
            "value": page,
        }
        if skip + self.graph_page_size < len(groups):
            body["@odata.nextLink"] = (
                f"{self.root_url}/v1.0/users/{oid}/getMemberObjects?$skiptoken={skip + self.graph_page_size}"
            )
        return JSONResponse(body)

    def _graph_users(self, request: Request) -> Response:
        params = request.query_params
        query = GraphUserQuery(
            raw_query=request.url.query, filter=params.get("$filter"), select=params.get("$select")
        )
        with self._lock:
            self.graph_requests += 1
            self.graph_user_queries.append(query)
            status = self.graph_users_status
        if not self._graph_authorized(request.headers.get("authorization")):
            return _error(401, "InvalidAuthenticationToken", "Access token is invalid.")
        if status is not None:
            return _error(status, "ServiceUnavailable" if status >= 500 else "BadRequest", "fake outage")
        match = _FILTER.match(query.filter or "")
        if match is None or match.group(1) != match.group(2):
            return _error(400, "BadRequest", "Invalid filter clause")
        wanted = match.group(1).replace("''", "'").lower()
        selected = [p for p in (query.select or "").split(",") if p]
        if not selected or any(p not in _PROPERTIES for p in selected):
            return _error(400, "BadRequest", "Parsing OData Select and Expand failed")
        with self._lock:
            hits = [
                u
                for u in self.graph_users
                if wanted in {(u.mail or "").lower(), u.user_principal_name.lower()}
            ]
        return JSONResponse(
            {
                "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users({','.join(selected)})",
                "value": [{p: getattr(u, _PROPERTIES[p]) for p in selected} for u in hits],
            }
        )


def add_graph_routes(app: FastAPI, fake: FakeGraph) -> None:
    @app.post("/v1.0/users/{oid}/getMemberObjects")
    async def get_member_objects(oid: str, request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or "securityEnabledOnly" not in body:
            return _error(400, "BadRequest", "securityEnabledOnly")
        skip = int(request.query_params.get("$skiptoken", "0"))
        return fake._graph_member_objects(oid, skip, request.headers.get("authorization"))

    @app.get("/v1.0/users")
    async def list_users(request: Request) -> Response:
        return fake._graph_users(request)
