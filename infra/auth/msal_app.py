"""The one MSAL confidential-client factory (web sign-in and Microsoft Graph).

Authority:

* ``KEEL_OIDC_ISSUER`` set: MSAL's generic OIDC authority (``oidc_authority=``),
  discovered at ``{issuer}/.well-known/openid-configuration``. This serves any
  OIDC provider, EntraID's v2 issuer, and the tests' local issuer.
* otherwise ``{KEEL_ENTRA_AUTHORITY_HOST}/{KEEL_ENTRA_TENANT_ID}``. Instance
  discovery (a call to login.microsoftonline.com) is skipped for authority
  hosts MSAL does not already know, such as a sovereign cloud or a proxy.

MSAL only speaks HTTPS to an authority. ``KEEL_OIDC_CA_BUNDLE`` adds a private
CA (an internal IdP, a TLS-inspecting proxy, the tests' issuer).

Credentials: ``KEEL_ENTRA_CLIENT_SECRET``, or a certificate
(``KEEL_ENTRA_CLIENT_CERTIFICATE_PATH``: a ``.pfx``/``.p12`` file, or a PEM file
with the private key and either the certificate or
``KEEL_ENTRA_CLIENT_CERTIFICATE_THUMBPRINT``).

MSAL is synchronous and does network I/O when an application is built (OIDC
discovery), so applications are built lazily, in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import msal  # type: ignore[import-untyped]
import requests
from requests.adapters import HTTPAdapter

from infra.settings import Settings

_WELL_KNOWN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login-us.microsoftonline.com",
    }
)
HTTP_TIMEOUT_S = 10.0


class _NoStoreTokenCache(msal.TokenCache):  # type: ignore[misc]
    """A cache that keeps nothing: the web sign-in needs the ID token once, not
    per-user tokens piling up in the API process."""

    def add(self, event: Any, now: Any = None) -> None:
        return None


class _CaBundleSession(requests.Session):
    """A requests session that always verifies with ``ca_bundle``.

    (A plain session's ``verify`` loses to ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``
    in the environment; proxies from the environment still apply.)
    """

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self._ca_bundle = ca_bundle
        adapter = HTTPAdapter(max_retries=1)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        merged: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
        merged["verify"] = self._ca_bundle
        return merged

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return super().request(*args, **kwargs)


def msal_configured(settings: Settings) -> bool:
    """A client id, a credential and an authority are all set."""
    has_credential = settings.entra_client_secret is not None or (
        settings.entra_client_certificate_path is not None
    )
    has_authority = bool(settings.oidc_issuer or settings.entra_tenant_id)
    return bool(settings.entra_client_id) and has_credential and has_authority


def client_credential(settings: Settings) -> str | dict[str, Any]:
    if settings.entra_client_secret is not None:
        return settings.entra_client_secret.get_secret_value()
    path = settings.entra_client_certificate_path
    if path is None:
        raise ValueError("KEEL_ENTRA_CLIENT_SECRET or KEEL_ENTRA_CLIENT_CERTIFICATE_PATH is required")
    if path.suffix.lower() in (".pfx", ".p12"):
        return {"private_key_pfx_path": str(path)}
    pem = path.read_text()
    thumbprint = settings.entra_client_certificate_thumbprint
    if thumbprint:
        return {"private_key": pem, "thumbprint": thumbprint.replace(":", "")}
    return {"private_key": pem, "public_certificate": pem}


def build_confidential_client(settings: Settings, *, keep_tokens: bool) -> Any:
    """A ``msal.ConfidentialClientApplication`` (blocking: call it in a thread).

    ``keep_tokens``: keep MSAL's in-memory token cache (the Graph app token is
    reused until it nears expiry); ``False`` for the web sign-in.
    """
    if not settings.entra_client_id:
        raise ValueError("KEEL_ENTRA_CLIENT_ID is required")
    options: dict[str, Any] = {"client_credential": client_credential(settings), "timeout": HTTP_TIMEOUT_S}
    if settings.oidc_ca_bundle is not None:
        options["http_client"] = _CaBundleSession(str(settings.oidc_ca_bundle))
    if not keep_tokens:
        options["token_cache"] = _NoStoreTokenCache()
        options["exclude_scopes"] = ["offline_access"]  # no refresh tokens: Keel keeps its own session
    if settings.oidc_issuer:
        options["oidc_authority"] = settings.oidc_issuer.rstrip("/")
    elif settings.entra_tenant_id:
        host = settings.entra_authority_host.rstrip("/")
        options["authority"] = f"{host}/{settings.entra_tenant_id}"
        if (urlsplit(host).hostname or "") not in _WELL_KNOWN_HOSTS:
            options["instance_discovery"] = False
    else:
        raise ValueError("KEEL_OIDC_ISSUER or KEEL_ENTRA_TENANT_ID is required")
    return msal.ConfidentialClientApplication(settings.entra_client_id, **options)


class LazyMsalApp:
    """Builds the MSAL application on first use (in a thread), then reuses it.

    A failed build (IdP unreachable) is retried on the next use.
    """

    def __init__(self, settings: Settings, *, keep_tokens: bool) -> None:
        self._settings = settings
        self._keep_tokens = keep_tokens
        self._app: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = await asyncio.to_thread(
                        build_confidential_client, self._settings, keep_tokens=self._keep_tokens
                    )
        return self._app
