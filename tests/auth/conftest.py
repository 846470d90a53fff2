"""Identity tests: a local EntraID-shaped issuer (tests/fakes/oidc_issuer.py) and
settings that point Keel's OIDC verification, MSAL and Graph at it.

``@pytest.mark.oidc_settings(field=value, ...)`` overrides settings for one test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from infra.settings import Settings
from tests.fakes.oidc_issuer import FakeOidcIssuer, FakeUser

ADMIN_GROUP = "6f1f2a4e-0000-4000-8000-00000000ad01"
READONLY_GROUP = "6f1f2a4e-0000-4000-8000-00000000ad02"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oidc_settings(**fields): settings overrides for one identity test")


@pytest.fixture(scope="session")
def _issuer() -> Iterator[FakeOidcIssuer]:
    with FakeOidcIssuer() as issuer:
        yield issuer


@pytest.fixture
def idp(_issuer: FakeOidcIssuer) -> FakeOidcIssuer:
    """The issuer with a fresh test user (new object id), no Graph data (groups, users),
    counters at zero."""
    _issuer.user = FakeUser()
    _issuer.reset_graph()
    _issuer.client_app_roles = []
    _issuer.jwks_unavailable = False
    _issuer.reset_counters()
    return _issuer


@pytest.fixture
def settings(settings: Settings, idp: FakeOidcIssuer, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = {
        "auth_mode": "oidc",
        "oidc_issuer": idp.issuer,
        "oidc_jwks_url": idp.jwks_url,
        "oidc_ca_bundle": idp.ca_path,
        "entra_client_id": idp.client_id,
        "entra_client_secret": SecretStr(idp.client_secret),
        "graph_base_url": idp.root_url,
        "role_mapping": {ADMIN_GROUP: "OrgAdmin", READONLY_GROUP: "ReadOnly"},
        "session_cookie_secure": False,
    }
    marker = request.node.get_closest_marker("oidc_settings")
    if marker is not None:
        overrides.update(marker.kwargs)
    return Settings(**{**settings.model_dump(), **overrides})
