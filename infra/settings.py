"""The one place configuration is read (env prefix ``KEEL_``).

Entry points build a :class:`Settings` and pass it down; nothing else reads the
environment. Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.models.chat import ActivityQueues
from core.policy.permissions import ROLE_PERMISSIONS
from core.policy.redaction import DEFAULT_KEY_PATTERN

DEV_SECRET_PLACEHOLDER = "keel-dev-insecure-secret-change-me"
_ROLES = frozenset(ROLE_PERMISSIONS)

LlmProvider = Literal["openai", "azure", "none"]


def is_loopback_host(host: str) -> bool:
    """Whether binding to ``host`` keeps the API on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Keel's configuration. Field ``foo_bar`` is read from ``KEEL_FOO_BAR``."""

    model_config = SettingsConfigDict(env_prefix="KEEL_", extra="ignore")

    # --- deployment --------------------------------------------------------
    env: Literal["development", "test", "production"] = "development"
    auth_mode: Literal["dev", "oidc"] = "dev"
    secret_key: SecretStr = SecretStr(DEV_SECRET_PLACEHOLDER)
    data_dir: Path = Path(".keel-data")
    log_level: str = "INFO"
    log_json: bool = True

    # --- API ---------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dev_token_ttl_s: int = Field(default=3600, ge=60)
    request_timeout_s: float = 180.0

    # --- Temporal ----------------------------------------------------------
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    #: Workflow history retention of the namespace when ``keel temporal-setup`` creates it.
    temporal_namespace_retention_days: int = Field(default=30, ge=1, le=3650)
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    chat_task_queue: str = "keel-chat"
    #: Bulkheads (docs/operations.md): the chat workflow sends knowledge searches and MCP
    #: tool calls to their own task queues, each served by its own worker pool, so a slow
    #: vector index or tool cannot take the slots the model calls need.
    retrieval_task_queue: str = "keel-retrieval"
    tools_task_queue: str = "keel-tools"
    #: Temporal over TLS (a self-hosted cluster with mTLS, or Temporal Cloud): the client
    #: certificate and key, and the CA that signed the server's certificate (PEM files).
    temporal_tls: bool = False
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    temporal_tls_ca_path: Path | None = None
    #: Temporal Cloud API key (instead of mTLS certificates); implies TLS.
    temporal_api_key: SecretStr | None = None
    #: The Temporal SDK's own Prometheus metrics (``temporal_*``) on this port, per process.
    temporal_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # --- workers -----------------------------------------------------------
    #: ``/health/live``, ``/health/ready`` and ``/metrics`` of a ``keel worker`` (or
    #: ``keel slack``) process on this port; off when unset.
    worker_health_port: int | None = Field(default=None, ge=1, le=65535)
    #: 127.0.0.1 by default; in a pod set 0.0.0.0 so the kubelet and Prometheus reach it.
    worker_health_host: str = "127.0.0.1"
    #: How long a stopping worker lets its running activities finish before it cancels them
    #: (Temporal then retries them elsewhere). Kubernetes' termination grace must be longer.
    worker_shutdown_grace_s: float = Field(default=30.0, ge=0.0, le=3600.0)

    # --- Postgres / Redis / Qdrant -----------------------------------------
    database_url: str | None = None
    redis_url: str | None = None
    qdrant_url: str | None = None
    qdrant_path: Path | None = None

    # --- LLM: any OpenAI-compatible chat-completions server -----------------
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    # --- LLM: Azure OpenAI / Azure AI Foundry -------------------------------
    azure_openai_endpoint: str | None = None
    azure_openai_deployment: str | None = None
    azure_openai_api_version: str = "2024-10-21"
    azure_openai_api_key: SecretStr | None = None
    azure_openai_use_entra: bool = False
    # --- LLM behaviour -----------------------------------------------------
    llm_timeout_s: float = 60.0
    llm_stream_timeout_s: float = 120.0
    llm_fallback_model: str | None = None
    llm_max_output_tokens: int = 1024
    llm_temperature: float | None = None
    system_prompt: str = (
        "You are Keel, a helpful assistant for the employees of this organisation. "
        "Answer accurately and concisely; say so when you do not know."
    )

    # --- chat sessions -----------------------------------------------------
    chat_max_message_chars: int = Field(default=32_000, ge=1)
    chat_idle_timeout_s: int = Field(default=24 * 3600, ge=1)
    chat_max_request_age_s: int = Field(default=180, ge=1)
    chat_history_max_messages: int = Field(default=40, ge=2)
    chat_max_queued_turns: int = Field(default=4, ge=1)
    stream_ttl_s: int = Field(default=3600, ge=60)

    # --- knowledge bases ---------------------------------------------------
    ingest_task_queue: str = "keel-ingest"
    blob_path: Path | None = None
    ingest_max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    ingest_max_pages: int = Field(default=2000, ge=1)
    ingest_chunk_chars: int = Field(default=1200, ge=200)
    ingest_chunk_overlap: int = Field(default=150, ge=0)
    ingest_batch_concurrency: int = Field(default=4, ge=1)
    embedding_provider: Literal["local", "openai", "azure"] = "local"
    embedding_model: str | None = None
    embedding_batch_size: int | None = Field(default=None, ge=1)
    retrieval_top_k: int = Field(default=5, ge=1, le=50)
    #: Chat cites only passages whose dense cosine similarity to the message reaches this
    #: floor (docs/knowledge.md "Relevance floor": calibrated with bench/relevance_floor.py
    #: for the bundled all-MiniLM-L6-v2; recalibrate for another embedding model). 0 turns it off.
    retrieval_min_score: float = Field(default=0.3, ge=0.0, le=1.0)

    # --- ingestion limits (issue 9) -------------------------------------------
    ingest_max_batch_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    ingest_max_docx_part_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    ingest_parse_timeout_s: float = Field(default=120.0, gt=0)
    ingest_max_chunks_per_document: int = Field(default=10_000, ge=1)
    ingest_max_in_flight_per_user: int = Field(default=100, ge=1)

    # --- agents --------------------------------------------------------------
    agents_path: Path | None = None
    default_agent: str = "default"

    # --- tools ---------------------------------------------------------------
    tool_approval_timeout_s: int = Field(default=3 * 24 * 3600, ge=1)
    tool_max_steps: int = Field(default=8, ge=1, le=50)
    tool_allowed_hosts: list[str] = Field(default_factory=list)
    tool_redact_pattern: str = DEFAULT_KEY_PATTERN
    tool_header_secrets: dict[str, dict[str, str]] = Field(default_factory=dict)

    # --- tool isolation (issue 9) --------------------------------------------
    #: When set, only these stdio commands (exact names or paths; a bare name also matches
    #: the executable it resolves to on PATH) may be registered or started.
    mcp_stdio_allowed_commands: list[str] | None = None
    #: When the worker runs as root, stdio tool servers run as this user (via ``setpriv``), so
    #: they cannot read the worker's /proc/<pid>/environ or its secret files.
    mcp_stdio_run_as_user: str | None = None
    # Every secret setting (``SECRET_FILE_SETTINGS``) may instead come from a file:
    # ``KEEL_<NAME>_FILE=/run/secrets/...`` (see ``_SecretFilesSource`` below).

    # --- identity: EntraID / any OIDC issuer ---------------------------------
    entra_tenant_id: str | None = None
    entra_client_id: str | None = None
    entra_client_secret: SecretStr | None = None
    entra_client_certificate_path: Path | None = None
    entra_client_certificate_thumbprint: str | None = None
    entra_authority_host: str = "https://login.microsoftonline.com"
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    oidc_leeway_s: int = Field(default=60, ge=0, le=600)
    oidc_jwks_cache_s: int = Field(default=3600, ge=60)
    oidc_jwks_min_refresh_s: int = Field(default=30, ge=0)
    oidc_ca_bundle: Path | None = None
    role_mapping: dict[str, str] = Field(default_factory=dict)
    graph_base_url: str = "https://graph.microsoft.com"
    graph_groups_cache_s: int = Field(default=3600, ge=0)
    # --- web sign-in (authorization code + PKCE through MSAL) ---------------
    web_redirect_uri: str | None = None
    web_post_login_path: str = "/"
    web_scopes: list[str] = Field(default_factory=list)
    session_cookie_secure: bool = True
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    # --- user directory (docs/identity.md#user-directory) --------------------
    #: A person's requests record them in the directory at most once per this many
    #: seconds (for the same email, name, groups and roles); web sign-ins always do.
    directory_record_interval_s: int = Field(default=300, ge=1, le=86_400)
    # --- API keys ------------------------------------------------------------
    api_key_max_ttl_days: int = Field(default=365, ge=1)

    # --- rate limits and load shedding ---------------------------------------
    rate_limit_per_minute: int = Field(default=60, ge=1)
    rate_limit_fail_mode: Literal["open", "closed"] = "open"
    max_concurrent_requests: int = Field(default=256, ge=1)

    # --- circuit breakers (docs/resilience.md#circuit-breakers) -----------------
    #: ``failures`` unhealthy failures within ``window_s`` open a circuit for ``open_s``.
    circuit_llm_failures: int = Field(default=5, ge=1)
    circuit_llm_window_s: float = Field(default=30.0, gt=0)
    circuit_llm_open_s: float = Field(default=60.0, gt=0)
    circuit_vector_failures: int = Field(default=3, ge=1)
    circuit_vector_window_s: float = Field(default=10.0, gt=0)
    circuit_vector_open_s: float = Field(default=30.0, gt=0)
    #: Each MCP tool server has its own circuit with these numbers.
    circuit_mcp_failures: int = Field(default=5, ge=1)
    circuit_mcp_window_s: float = Field(default=30.0, gt=0)
    circuit_mcp_open_s: float = Field(default=60.0, gt=0)
    circuit_slack_failures: int = Field(default=5, ge=1)
    circuit_slack_window_s: float = Field(default=30.0, gt=0)
    circuit_slack_open_s: float = Field(default=60.0, gt=0)
    #: Prefix of the circuits' Redis keys: installations (or tests) sharing a Redis keep apart.
    circuit_namespace: str = "keel"

    # --- token budgets and prices ------------------------------------------
    budget_daily_tokens: int | None = Field(default=200_000, ge=1)
    budget_monthly_tokens: int | None = Field(default=4_000_000, ge=1)
    budget_warning_ratio: float = Field(default=0.8, gt=0, lt=1)
    budget_reservation_ttl_s: int = Field(default=3600, ge=60)
    llm_prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    cost_currency: str = "USD"

    # --- audit trail ---------------------------------------------------------
    audit_hmac_key: SecretStr | None = None
    audit_retention_days: int = Field(default=90, ge=1)
    audit_retention_by_event: dict[str, int] = Field(default_factory=dict)
    audit_retention_interval_s: int = Field(default=24 * 3600, ge=60)
    audit_export_interval_s: int = Field(default=60, ge=1)
    audit_webhook_url: str | None = None
    audit_webhook_secret: SecretStr | None = None
    audit_syslog_address: str | None = None
    audit_task_queue: str = "keel-audit"

    # --- Slack (docs/slack.md) -------------------------------------------------
    #: The bot token (``xoxb-…``); Slack is off while it is unset.
    slack_bot_token: SecretStr | None = None
    #: Verifies every request Slack sends to ``/slack/*`` (required with the HTTP endpoints).
    slack_signing_secret: SecretStr | None = None
    #: The app-level token (``xapp-…``) for Socket Mode (``keel slack``).
    slack_app_token: SecretStr | None = None
    #: Slack's Web API base URL (a local server in tests); ends with ``/``.
    slack_api_url: str = "https://slack.com/api/"
    #: Where links in Slack answers point (the web UI), e.g. ``https://keel.example.com``.
    web_base_url: str = "http://127.0.0.1:8000"
    #: The task queue of the Slack workflows (run by ``keel worker`` when the bot token is set).
    slack_task_queue: str = "keel-slack"
    #: How long a Slack user's profile is cached (Redis); member lists are never cached.
    slack_cache_s: int = Field(default=300, ge=0)
    #: Which documents an answer in a *public* channel may use: ``org`` (default) only those
    #: everyone in the organisation may read, since anyone in the workspace can read a public
    #: channel without joining it; ``members``: those every member may read (as private channels).
    slack_public_channels: Literal["org", "members"] = "org"
    #: Slack posts at most one update per channel this often (Slack allows about 1/s).
    slack_post_interval_s: float = Field(default=1.0, ge=0.0, le=10.0)
    #: The most characters the bot streams into one Slack message before it goes on in the next.
    slack_message_max_chars: int = Field(default=11_000, ge=500, le=12_000)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Constructor arguments win, then the environment, then ``KEEL_*_FILE`` files.
        return (
            init_settings,
            env_settings,
            _SecretFilesSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production":
            if self.auth_mode == "dev":
                raise ValueError("KEEL_AUTH_MODE=dev is refused when KEEL_ENV=production")
            if self.secret_key.get_secret_value() in ("", DEV_SECRET_PLACEHOLDER):
                raise ValueError("KEEL_SECRET_KEY must be set to a real secret when KEEL_ENV=production")
            if (
                not self.database_url
                or not self.redis_url
                or not self.temporal_address
                or not self.qdrant_url
            ):
                raise ValueError(
                    "KEEL_DATABASE_URL, KEEL_REDIS_URL, KEEL_TEMPORAL_ADDRESS and KEEL_QDRANT_URL are "
                    "required when KEEL_ENV=production (embedded engines are for development only)"
                )
            if not self.oidc_enabled or not self.resolved_oidc_audiences:
                raise ValueError(
                    "KEEL_ENTRA_TENANT_ID and KEEL_ENTRA_CLIENT_ID (or KEEL_OIDC_ISSUER, "
                    "KEEL_OIDC_AUDIENCE and KEEL_OIDC_JWKS_URL) are required when KEEL_ENV=production"
                )
        if self.oidc_enabled and not (self.resolved_oidc_issuers and self.resolved_oidc_audiences):
            raise ValueError(
                "OIDC needs an issuer and an audience: set KEEL_OIDC_ISSUER and KEEL_OIDC_AUDIENCE"
            )
        if (self.temporal_tls_cert_path is None) != (self.temporal_tls_key_path is None):
            raise ValueError("KEEL_TEMPORAL_TLS_CERT_PATH and KEEL_TEMPORAL_TLS_KEY_PATH go together")
        bad_roles = sorted(set(self.role_mapping.values()) - _ROLES)
        if bad_roles:
            raise ValueError(f"KEEL_ROLE_MAPPING names unknown roles {bad_roles}; known: {sorted(_ROLES)}")
        if any(alg.upper().startswith("HS") or alg.lower() == "none" for alg in self.oidc_algorithms):
            raise ValueError("KEEL_OIDC_ALGORITHMS takes asymmetric algorithms only (RS256, ES256, ...)")
        return self

    # --- edge hardening (issue 9) ---------------------------------------------
    #: When set, ``/metrics`` needs ``Authorization: Bearer <token>``.
    metrics_token: SecretStr | None = None
    #: When set, ``keel api`` serves ``/metrics`` on this port (bound to KEEL_API_HOST), not on the API port.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: How often the API re-reads the business gauges (active users, documents, failed operations).
    metrics_refresh_s: float = Field(default=60.0, ge=1.0, le=3600.0)

    @model_validator(mode="after")
    def _refuse_exposed_edge(self) -> Settings:
        """Dev auth and the placeholder secret only on loopback, whatever KEEL_ENV says;
        production metrics behind a token or on their own port."""
        if not is_loopback_host(self.api_host):
            where = f"KEEL_API_HOST={self.api_host!r} is not a loopback address (127.0.0.1, ::1, localhost)"
            if self.auth_mode == "dev":
                raise ValueError(
                    f"KEEL_AUTH_MODE=dev is refused: {where}. Set KEEL_AUTH_MODE=oidc, "
                    "or bind the API to loopback with KEEL_API_HOST=127.0.0.1"
                )
            if self.secret_key.get_secret_value() in ("", DEV_SECRET_PLACEHOLDER):
                raise ValueError(
                    f"KEEL_SECRET_KEY is the public development placeholder (or empty), refused: {where}. "
                    "Set KEEL_SECRET_KEY to a real secret, "
                    "or bind the API to loopback with KEEL_API_HOST=127.0.0.1"
                )
        if self.env == "production" and self.metrics_token is None and self.metrics_port is None:
            raise ValueError(
                "KEEL_METRICS_TOKEN is required when KEEL_ENV=production, unless KEEL_METRICS_PORT "
                "serves /metrics on a separate, internal port"
            )
        return self

    # --- end of edge hardening (issue 9) --------------------------------------

    @property
    def slack_enabled(self) -> bool:
        """The Slack bot runs when it has a bot token (``/slack/*`` then need the signing secret)."""
        return self.slack_bot_token is not None

    # --- identity, derived ---------------------------------------------------
    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_jwks_url or self.entra_tenant_id)

    @property
    def resolved_oidc_issuers(self) -> list[str]:
        """Accepted ``iss`` values: the override, else EntraID's v2 and v1 issuers."""
        if self.oidc_issuer:
            return [self.oidc_issuer]
        if self.entra_tenant_id:
            return [
                f"https://login.microsoftonline.com/{self.entra_tenant_id}/v2.0",
                f"https://sts.windows.net/{self.entra_tenant_id}/",
            ]
        return []

    @property
    def resolved_oidc_audiences(self) -> list[str]:
        """Accepted ``aud`` values: the override, else the app's client id and ``api://`` URI."""
        if self.oidc_audience:
            return [self.oidc_audience]
        if self.entra_client_id:
            return [self.entra_client_id, f"api://{self.entra_client_id}"]
        return []

    @property
    def resolved_oidc_jwks_url(self) -> str | None:
        if self.oidc_jwks_url:
            return self.oidc_jwks_url
        if self.entra_tenant_id:
            return f"{self.entra_authority_host}/{self.entra_tenant_id}/discovery/v2.0/keys"
        return None

    @property
    def resolved_audit_hmac_key(self) -> bytes:
        key = self.audit_hmac_key or self.secret_key
        return key.get_secret_value().encode()

    @property
    def llm_provider(self) -> LlmProvider:
        if self.azure_openai_endpoint and self.azure_openai_deployment:
            return "azure"
        if self.llm_base_url or self.llm_model:
            return "openai" if self.llm_model else "none"
        return "none"

    @property
    def llm_model_name(self) -> str | None:
        """The model (or Azure deployment) name a turn records."""
        if self.llm_provider == "azure":
            return self.azure_openai_deployment
        if self.llm_provider == "openai":
            return self.llm_model
        return None

    @property
    def activity_queues(self) -> ActivityQueues:
        """Where a chat session workflow sends its knowledge searches and tool calls."""
        return ActivityQueues(retrieval=self.retrieval_task_queue, tools=self.tools_task_queue)

    @property
    def resolved_blob_path(self) -> Path:
        return self.blob_path or self.data_dir / "blobs"

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"


#: Settings holding credentials; each may be read from ``KEEL_<NAME>_FILE`` instead of
#: ``KEEL_<NAME>``, so production keeps them out of the process environment.
SECRET_FILE_SETTINGS: frozenset[str] = frozenset(
    {name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
    | {"database_url", "redis_url", "qdrant_url", "tool_header_secrets"}
)


class _SecretFilesSource(PydanticBaseSettingsSource):
    """``KEEL_<NAME>_FILE``: the path of a file holding a secret setting's value (trailing
    newline stripped; JSON for structured settings). Setting both ``KEEL_<NAME>`` and
    ``KEEL_<NAME>_FILE`` is refused, and so is a file that cannot be read."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env_name = f"KEEL_{field_name}".upper()
        path = os.environ.get(f"{env_name}_FILE")
        if field_name not in SECRET_FILE_SETTINGS or not path:
            return None, field_name, False
        if os.environ.get(env_name) is not None:
            raise ValueError(f"set {env_name} or {env_name}_FILE, not both")
        try:
            raw = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{env_name}_FILE: cannot read {path}: {exc.strerror}") from None
        return (json.loads(raw) if self.field_is_complex(field) else raw), field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _key, _complex = self.get_field_value(field, name)
            if value is not None:
                found[name] = value
        return found
