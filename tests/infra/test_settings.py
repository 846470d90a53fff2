"""Settings refuse unsafe production configurations."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from infra.settings import Settings

PROD: dict[str, Any] = {
    "env": "production",
    "auth_mode": "oidc",
    "secret_key": SecretStr("a-real-secret-from-the-vault-0123456789"),
    "database_url": "postgresql://db/keel",
    "redis_url": "redis://cache:6379/0",
    "temporal_address": "temporal:7233",
    "entra_tenant_id": "00000000-0000-4000-8000-000000000001",
    "entra_client_id": "00000000-0000-4000-8000-000000000002",
}


def test_production_accepts_a_complete_configuration() -> None:
    assert Settings(**PROD).env == "production"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"auth_mode": "dev"}, "KEEL_AUTH_MODE=dev is refused"),
        ({"secret_key": SecretStr("keel-dev-insecure-secret-change-me")}, "KEEL_SECRET_KEY"),
        ({"database_url": None}, "required"),
        ({"temporal_address": None}, "required"),
        ({"entra_tenant_id": None}, "KEEL_ENTRA_TENANT_ID and KEEL_ENTRA_CLIENT_ID"),
        ({"entra_client_id": None}, "KEEL_ENTRA_TENANT_ID and KEEL_ENTRA_CLIENT_ID"),
        ({"role_mapping": {"g1": "Superuser"}}, "unknown roles"),
        ({"oidc_algorithms": ["RS256", "HS256"]}, "asymmetric algorithms only"),
    ],
)
def test_production_refuses_unsafe_settings(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{**PROD, **override})


def test_keel_refuses_to_start_with_dev_auth_in_production() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update({"KEEL_ENV": "production", "KEEL_AUTH_MODE": "dev"})
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "KEEL_AUTH_MODE=dev is refused when KEEL_ENV=production" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_llm_provider_is_derived_from_settings() -> None:
    assert Settings().llm_provider == "none"
    assert Settings(llm_base_url="http://x/v1", llm_model="m").llm_provider == "openai"
    azure = Settings(azure_openai_endpoint="https://r.openai.azure.com", azure_openai_deployment="d")
    assert azure.llm_provider == "azure"
    assert azure.llm_model_name == "d"


def test_entra_settings_derive_v1_and_v2_issuers_audiences_and_keys() -> None:
    settings = Settings(**PROD)
    tenant, client = PROD["entra_tenant_id"], PROD["entra_client_id"]
    assert settings.resolved_oidc_issuers == [
        f"https://login.microsoftonline.com/{tenant}/v2.0",
        f"https://sts.windows.net/{tenant}/",
    ]
    assert settings.resolved_oidc_audiences == [client, f"api://{client}"]
    assert (
        settings.resolved_oidc_jwks_url == f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
    )
    override = Settings(**{**PROD, "oidc_issuer": "https://idp.example/", "oidc_audience": "keel"})
    assert override.resolved_oidc_issuers == ["https://idp.example/"]
    assert override.resolved_oidc_audiences == ["keel"]


# --- secrets from files (issue 9): KEEL_<NAME>_FILE -------------------------------------


def test_secret_settings_are_read_from_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "db").write_text("postgresql://keel:from-file@db/keel\n")
    (tmp_path / "llm").write_text("sk-from-a-file")
    (tmp_path / "headers").write_text('{"crm": {"Authorization": "Bearer crm-token"}}')
    monkeypatch.setenv("KEEL_DATABASE_URL_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("KEEL_LLM_API_KEY_FILE", str(tmp_path / "llm"))
    monkeypatch.setenv("KEEL_TOOL_HEADER_SECRETS_FILE", str(tmp_path / "headers"))
    monkeypatch.delenv("KEEL_DATABASE_URL", raising=False)
    monkeypatch.delenv("KEEL_LLM_API_KEY", raising=False)
    monkeypatch.delenv("KEEL_TOOL_HEADER_SECRETS", raising=False)
    settings = Settings()
    assert settings.database_url == "postgresql://keel:from-file@db/keel"
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == "sk-from-a-file"
    assert settings.tool_header_secrets == {"crm": {"Authorization": "Bearer crm-token"}}
    # Constructor arguments still win (entry points and tests pass settings explicitly).
    assert Settings(database_url="postgresql://explicit/db").database_url == "postgresql://explicit/db"


def test_a_secret_set_twice_or_unreadable_is_refused(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").write_text("s3cret")
    monkeypatch.setenv("KEEL_SECRET_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("KEEL_SECRET_KEY", "another")
    with pytest.raises(Exception, match="KEEL_SECRET_KEY"):
        Settings()
    monkeypatch.delenv("KEEL_SECRET_KEY")
    monkeypatch.setenv("KEEL_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(Exception, match="KEEL_SECRET_KEY_FILE"):
        Settings()


def test_only_secret_settings_take_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "level").write_text("DEBUG")
    monkeypatch.setenv("KEEL_LOG_LEVEL_FILE", str(tmp_path / "level"))
    monkeypatch.delenv("KEEL_LOG_LEVEL", raising=False)
    assert Settings().log_level == "INFO"
