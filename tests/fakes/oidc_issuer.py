"""A local OIDC issuer shaped like EntraID, plus a sliver of Microsoft Graph, for tests.

It speaks the real protocols over HTTPS (MSAL refuses plain HTTP authorities):
a private CA is generated at start (``ca_path``: give it to ``KEEL_OIDC_CA_BUNDLE``
and to the test's HTTP client), and the server's certificate is issued by it
for 127.0.0.1.

Endpoints (``{root}`` = ``https://127.0.0.1:PORT``, ``{t}`` = the tenant id)
    ``GET  {root}/{t}/v2.0/.well-known/openid-configuration``   discovery
    ``GET  {root}/{t}/discovery/v2.0/keys``                     JWKS (RS256 keys)
    ``GET  {root}/{t}/oauth2/v2.0/authorize``                   auto-consents ``user``;
            records ``code_challenge`` and ``nonce``; 302 to ``redirect_uri`` with code+state,
            or (``response_mode=form_post``) a self-submitting form that POSTs them
    ``POST {root}/{t}/oauth2/v2.0/token``                       ``authorization_code`` (PKCE S256
            checked; id_token + access_token) and ``client_credentials`` (app token);
            the client secret is checked
    ``POST {root}/v1.0/users/{oid}/getMemberObjects``           Graph (app token required;
            ``graph_page_size`` ids per page, ``@odata.nextLink`` paging)
    ``GET  {root}/v1.0/users?$filter=…&$select=…``               Graph's users by mail or UPN
            (``add_graph_user``); both Graph endpoints: tests/fakes/fake_graph.py

Helpers: ``issue(**claims)`` signs an access token (``version=1`` or ``2``
shaped), ``rotate()`` publishes a new key and retires the current one,
``jwks_requests`` / ``graph_requests`` / ``token_requests`` count calls.

    with FakeOidcIssuer() as idp:
        settings = Settings(oidc_issuer=idp.issuer, oidc_jwks_url=idp.jwks_url,
                            oidc_ca_bundle=idp.ca_path, entra_client_id=idp.client_id,
                            entra_client_secret=idp.client_secret, graph_base_url=idp.root_url, ...)
        token = idp.issue(groups=["g1"], roles=["OrgAdmin"])
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import http.client
import ipaddress
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from tests.fakes.fake_graph import FakeGraph, add_graph_routes
from tests.fakes.threaded_server import ThreadedServer

TOKEN_TTL_S = 3600


@dataclass
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }


@dataclass
class _PendingCode:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    scope: str
    user: dict[str, Any]


@dataclass
class FakeUser:
    oid: str = field(default_factory=lambda: str(uuid.uuid4()))
    name: str = "Ada Lovelace"
    email: str = "ada@example.test"
    groups: list[str] | None = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_signing_key() -> SigningKey:
    return SigningKey(kid=secrets.token_hex(8), private_key=rsa.generate_private_key(65537, 2048))


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """(CA cert, server cert, server key): a private CA and a 127.0.0.1 certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(65537, 2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Keel test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(65537, 2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


class FakeOidcIssuer(FakeGraph, ThreadedServer):
    """An EntraID-shaped OIDC issuer on ``https://127.0.0.1:<free port>`` (daemon thread)."""

    server_name = "fake OIDC issuer"

    def __init__(self, *, host: str = "127.0.0.1", log_level: str = "warning") -> None:
        super().__init__(host=host, log_level=log_level)
        self.tenant_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = secrets.token_urlsafe(24)
        #: app roles granted to this client (client credentials tokens carry them)
        self.client_app_roles: list[str] = []
        self.service_principal_oid = str(uuid.uuid4())
        self.user = FakeUser()
        self._lock = threading.Lock()
        self.reset_graph()
        self._keys: list[SigningKey] = [new_signing_key()]
        self.retired_keys: list[SigningKey] = []
        self._codes: dict[str, _PendingCode] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.jwks_requests = 0
        #: answer the JWKS endpoint with 503 (an IdP outage)
        self.jwks_unavailable = False
        self.token_requests: list[dict[str, str]] = []
        self.token_errors: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="keel-oidc-")
        self.ca_path, self._cert_path, self._key_path = _tls_files(Path(self._tmp.name))
        self.app = _build_app(self)

    # -- lifecycle (start, stop, port: ThreadedServer) ---------------------------
    def _asgi_app(self) -> ASGIApp:
        return self.app

    def _uvicorn_options(self) -> dict[str, Any]:
        return {"lifespan": "off", "ssl_certfile": str(self._cert_path), "ssl_keyfile": str(self._key_path)}

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._tmp.cleanup()

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        conn = http.client.HTTPSConnection(self._host, self.port, timeout=1.0, context=context)
        try:
            conn.request("GET", f"/{self.tenant_id}/v2.0/.well-known/openid-configuration")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def reset_counters(self) -> None:
        with self._lock:
            self.jwks_requests = 0
            self.graph_requests = 0
            self.token_requests.clear()
            self.token_errors.clear()
            self.authorize_requests.clear()

    # -- addresses --------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"https://{self._host}:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.root_url}/{self.tenant_id}/v2.0"

    @property
    def jwks_url(self) -> str:
        return f"{self.root_url}/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def api_audience(self) -> str:
        """The audience of access tokens for Keel's API (v1 tokens use ``api://<client id>``)."""
        return self.client_id

    # -- keys -------------------------------------------------------------------
    @property
    def active_key(self) -> SigningKey:
        with self._lock:
            return self._keys[-1]

    def rotate(self) -> SigningKey:
        """Publish a new signing key and retire (unpublish) the current one."""
        new = new_signing_key()
        with self._lock:
            self.retired_keys.extend(self._keys)
            self._keys = [new]
        return new

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk() for k in self._keys]}

    # -- tokens -----------------------------------------------------------------
    def sign(self, claims: dict[str, Any], *, key: SigningKey | None = None, kid: str | None = None) -> str:
        key = key or self.active_key
        return jwt.encode(
            claims, key.private_key, algorithm="RS256", headers={"kid": kid or key.kid, "typ": "JWT"}
        )

    def issue(
        self,
        *,
        version: int = 2,
        key: SigningKey | None = None,
        kid: str | None = None,
        omit: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A delegated (person) access token for Keel's API; ``claims`` override the defaults."""
        now = int(time.time())
        user = self.user
        base: dict[str, Any] = {
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_TTL_S,
            "tid": self.tenant_id,
            "oid": user.oid,
            "sub": secrets.token_urlsafe(16),  # pairwise: differs from oid for people
            "name": user.name,
            "scp": "access_as_user",
            "roles": list(user.roles),
            "uti": secrets.token_urlsafe(8),
        }
        if user.groups is not None:
            base["groups"] = list(user.groups)
        if version == 1:
            base.update(
                aud=f"api://{self.client_id}",
                ver="1.0",
                upn=user.email,
                unique_name=user.email,
                appid=str(uuid.uuid4()),
                appidacr="0",
            )
        else:
            base.update(
                aud=self.api_audience, ver="2.0", preferred_username=user.email, azp=str(uuid.uuid4())
            )
        base.update(user.extra)
        base.update(claims)
        for name in omit:
            base.pop(name, None)
        return self.sign(base, key=key, kid=kid)

    def issue_app_token(self, *, audience: str | None = None, roles: list[str] | None = None) -> str:
        """A client-credentials (app-only) token for this client, as ``/token`` issues it."""
        now = int(time.time())
        return self.sign(
            {
                "iss": self.issuer,
                "aud": audience or self.api_audience,
                "iat": now,
                "nbf": now,
                "exp": now + TOKEN_TTL_S,
                "tid": self.tenant_id,
                "oid": self.service_principal_oid,
                "sub": self.service_principal_oid,
                "azp": self.client_id,
                "azpacr": "1",
                "idtyp": "app",
                "roles": list(self.client_app_roles if roles is None else roles),
                "ver": "2.0",
            }
        )

    def _id_token(self, pending: _PendingCode) -> str:
        now = int(time.time())
        user = pending.user
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": pending.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_TTL_S,
            "tid": self.tenant_id,
            "oid": user["oid"],
            "sub": user["sub"],
            "name": user["name"],
            "preferred_username": user["email"],
            "email": user["email"],
            "roles": user["roles"],
            "ver": "2.0",
        }
        if user["groups"] is not None:
            claims["groups"] = user["groups"]
        else:
            claims["_claim_names"] = {"groups": "src1"}
            claims["_claim_sources"] = {"src1": {"endpoint": f"{self.root_url}/v1.0/users/{user['oid']}"}}
        if pending.nonce is not None:
            claims["nonce"] = pending.nonce
        return self.sign(claims)

    def verify_app_token(self, token: str, *, audience: str) -> dict[str, Any] | None:
        keys = {k.kid: k for k in self._keys}
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = keys[str(kid)]
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=["RS256"],
                audience=audience,
                issuer=self.issuer,
            )
        except (jwt.PyJWTError, KeyError):
            return None
        return claims if claims.get("idtyp") == "app" else None

    # -- protocol handlers (called from the server thread) ------------------------
    def _authorize(self, params: dict[str, str]) -> Response:
        with self._lock:
            self.authorize_requests.append(params)
        if params.get("client_id") != self.client_id:
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        redirect_uri = params.get("redirect_uri", "")
        if params.get("response_type") != "code" or not redirect_uri:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(24)
        user = self.user
        pending = _PendingCode(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=params.get("code_challenge"),
            code_challenge_method=params.get("code_challenge_method"),
            nonce=params.get("nonce"),
            scope=params.get("scope", ""),
            user={
                "oid": user.oid,
                "sub": secrets.token_urlsafe(16),
                "name": user.name,
                "email": user.email,
                "groups": None if user.groups is None else list(user.groups),
                "roles": list(user.roles),
            },
        )
        with self._lock:
            self._codes[code] = pending
        answer = {"code": code, "session_state": str(uuid.uuid4())}
        if "state" in params:
            answer["state"] = params["state"]
        if params.get("response_mode") == "form_post":
            return HTMLResponse(_form_post_page(redirect_uri, answer))
        return RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", status_code=302)

    def _token(self, form: dict[str, str], authorization: str | None) -> Response:
        with self._lock:
            self.token_requests.append(form)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if (
            client_id != self.client_id
            or not secret
            or not secrets.compare_digest(secret, self.client_secret)
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."},
                status_code=401,
            )
        grant = form.get("grant_type")
        if grant == "client_credentials":
            scope = form.get("scope", "")
            resource = next((s for s in scope.split() if s.endswith("/.default")), None)
            if resource is None:
                return JSONResponse({"error": "invalid_scope"}, status_code=400)
            audience = resource.removesuffix("/.default")
            token = self.issue_app_token(audience=audience)
            return JSONResponse({"token_type": "Bearer", "expires_in": TOKEN_TTL_S, "access_token": token})
        if grant == "authorization_code":
            return self._redeem_code(form)
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    def _redeem_code(self, form: dict[str, str]) -> Response:
        with self._lock:
            pending = self._codes.pop(form.get("code", ""), None)
        if pending is None or pending.redirect_uri != form.get("redirect_uri"):
            return self._token_error("invalid_grant", "AADSTS70008: the code is invalid or was used")
        if pending.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            computed = _b64url(hashlib.sha256(verifier.encode()).digest())
            if pending.code_challenge_method != "S256" or computed != pending.code_challenge:
                return self._token_error("invalid_grant", "AADSTS501481: the code_verifier does not match")
        now = int(time.time())
        access = self.sign(
            {
                "iss": self.issuer,
                "aud": "00000003-0000-0000-c000-000000000000",  # Graph, like a plain sign-in
                "iat": now,
                "nbf": now,
                "exp": now + TOKEN_TTL_S,
                "oid": pending.user["oid"],
                "sub": pending.user["sub"],
                "scp": "openid profile User.Read",
                "ver": "2.0",
            }
        )
        return JSONResponse(
            {
                "token_type": "Bearer",
                "scope": pending.scope,
                "expires_in": TOKEN_TTL_S,
                "access_token": access,
                "id_token": self._id_token(pending),
            }
        )

    def _token_error(self, error: str, description: str) -> Response:
        with self._lock:
            self.token_errors.append(description)
        return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _form_post_page(action: str, fields: dict[str, str]) -> str:
    """What EntraID answers for ``response_mode=form_post``: a self-submitting form."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>' for k, v in fields.items()
    )
    return (
        '<html><head><title>Working...</title></head><body onload="document.forms[0].submit()">'
        f'<form method="POST" name="hiddenform" action="{html.escape(action)}">{inputs}'
        '<noscript><input type="submit" value="Continue"/></noscript></form></body></html>'
    )


def _build_app(fake: FakeOidcIssuer) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def discovery(tenant: str) -> Response:
        if tenant != fake.tenant_id:
            return JSONResponse({"error": "invalid_tenant"}, status_code=400)
        base = f"{fake.root_url}/{tenant}"
        return JSONResponse(
            {
                "issuer": fake.issuer,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": fake.jwks_url,
                "response_types_supported": ["code", "id_token", "code id_token"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            }
        )

    @app.get("/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str) -> Response:
        with fake._lock:
            fake.jwks_requests += 1
        if fake.jwks_unavailable:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
        return JSONResponse(fake.jwks())

    @app.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize(tenant: str, request: Request) -> Response:
        return fake._authorize(dict(request.query_params))

    @app.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        return fake._token(form, request.headers.get("authorization"))

    add_graph_routes(app, fake)
    return app
