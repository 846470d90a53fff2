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
    "qdrant_url": "http://qdrant:6333",
    "entra_tenant_id": "00000000-0000-4000-8000-000000000001",
    "entra_client_id": "00000000-0000-4000-8000-000000000002",
    "metrics_token": SecretStr("a-metrics-scrape-token-from-the-vault"),
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
        ({"qdrant_url": None}, "KEEL_QDRANT_URL are required"),
        ({"temporal_tls_cert_path": "/tls/client.pem"}, "go together"),
        ({"entra_tenant_id": None}, "KEEL_ENTRA_TENANT_ID and KEEL_ENTRA_CLIENT_ID"),
        ({"entra_client_id": None}, "KEEL_ENTRA_TENANT_ID and KEEL_ENTRA_CLIENT_ID"),
        ({"role_mapping": {"g1": "Superuser"}}, "unknown roles"),
        ({"oidc_algorithms": ["RS256", "HS256"]}, "asymmetric algorithms only"),
        ({"metrics_token": None}, "KEEL_METRICS_TOKEN is required when KEEL_ENV=production"),
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


def test_production_serves_metrics_without_a_token_only_on_their_own_port() -> None:
    settings = Settings(**{**PROD, "metrics_token": None, "metrics_port": 9464})
    assert settings.metrics_port == 9464


@pytest.mark.parametrize("env", ["development", "test", "production"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "keel.internal", "", "[::]"])
def test_dev_auth_is_refused_off_loopback_whatever_the_env(env: str, host: str) -> None:
    config: dict[str, Any] = {**PROD, "env": env, "auth_mode": "dev", "api_host": host}
    with pytest.raises(ValidationError, match="KEEL_AUTH_MODE=dev is refused"):
        Settings(**config)


@pytest.mark.parametrize("env", ["development", "test"])  # production refuses it anywhere (above)
@pytest.mark.parametrize("secret", ["", "keel-dev-insecure-secret-change-me"])
def test_the_placeholder_secret_is_refused_off_loopback_whatever_the_env(env: str, secret: str) -> None:
    config: dict[str, Any] = {**PROD, "env": env, "secret_key": SecretStr(secret), "api_host": "0.0.0.0"}
    with pytest.raises(ValidationError, match="KEEL_SECRET_KEY is the public development placeholder") as err:
        Settings(**config)
    assert "KEEL_API_HOST=127.0.0.1" in str(err.value)  # the message says what to change


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_dev_auth_and_the_placeholder_are_accepted_on_loopback(host: str) -> None:
    settings = Settings(env="development", auth_mode="dev", api_host=host)
    assert settings.auth_mode == "dev"


def test_off_loopback_needs_oidc_and_a_real_secret() -> None:
    settings = Settings(
        env="development", auth_mode="oidc", api_host="0.0.0.0", secret_key=SecretStr("a-real-secret-0123")
    )
    assert settings.api_host == "0.0.0.0"


def test_keel_refuses_to_start_with_dev_auth_off_loopback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update({"KEEL_ENV": "development", "KEEL_AUTH_MODE": "dev", "KEEL_API_HOST": "0.0.0.0"})
    for command in ("api", "dev"):
        proc = subprocess.run(
            [sys.executable, "-m", "workers.cli", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "KEEL_AUTH_MODE=dev is refused: KEEL_API_HOST='0.0.0.0' is not a loopback" in proc.stderr
        assert "Traceback" not in proc.stderr


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
