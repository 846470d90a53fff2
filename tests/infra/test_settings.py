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
