"""The one place configuration is read (env prefix ``KEEL_``).

Entry points build a :class:`Settings` and pass it down; nothing else reads the
environment. Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PLACEHOLDER = "keel-dev-insecure-secret-change-me"

LlmProvider = Literal["openai", "azure", "none"]


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
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    chat_task_queue: str = "keel-chat"

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

    # --- agents --------------------------------------------------------------
    agents_path: Path | None = None
    default_agent: str = "default"

    # --- tools ---------------------------------------------------------------
    tool_approval_timeout_s: int = Field(default=3 * 24 * 3600, ge=1)
    tool_max_steps: int = Field(default=8, ge=1, le=50)
    tool_allowed_hosts: list[str] = Field(default_factory=list)
    tool_redact_pattern: str = r"pass(word)?|secret|token|api[_-]?key|authorization|credential"
    tool_header_secrets: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production":
            if self.auth_mode == "dev":
                raise ValueError("KEEL_AUTH_MODE=dev is refused when KEEL_ENV=production")
            if self.secret_key.get_secret_value() in ("", DEV_SECRET_PLACEHOLDER):
                raise ValueError("KEEL_SECRET_KEY must be set to a real secret when KEEL_ENV=production")
            if not self.database_url or not self.redis_url or not self.temporal_address:
                raise ValueError(
                    "KEEL_DATABASE_URL, KEEL_REDIS_URL and KEEL_TEMPORAL_ADDRESS are required "
                    "when KEEL_ENV=production (embedded engines are for development only)"
                )
        return self

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
    def resolved_blob_path(self) -> Path:
        return self.blob_path or self.data_dir / "blobs"

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"
