"""The one factory of OpenAI SDK clients: any OpenAI-compatible server, or Azure OpenAI
(an API key, or Entra ID through azure-identity). Used by the chat model (infra/llm.py)
and the remote embedders (infra/embeddings.py).

SDK retries are always off (``max_retries=0``): Temporal's RetryPolicy on the calling
activity is the one retry layer, and every attempt shows in the history.
"""

from __future__ import annotations

from typing import Any, Literal

from openai import AsyncAzureOpenAI, AsyncOpenAI, Timeout

from core.errors import ErrorCode, KeelError
from infra.settings import Settings

_AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"


def _azure_token_provider() -> Any:
    try:
        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise KeelError(
            ErrorCode.LLM_NOT_CONFIGURED,
            "KEEL_AZURE_OPENAI_USE_ENTRA needs the 'azure-identity' package (pip install 'keel[azure]')",
        ) from exc
    return get_bearer_token_provider(DefaultAzureCredential(), _AZURE_SCOPE)


def openai_client(
    settings: Settings, *, provider: Literal["openai", "azure"], timeout: Timeout, what: str
) -> AsyncOpenAI:
    """A client for ``provider`` from ``settings``; ``what`` names the user in errors
    ("Azure OpenAI", "Azure embeddings").

    - ``openai``: ``KEEL_LLM_BASE_URL`` with ``KEEL_LLM_API_KEY`` (``"unused"`` when unset);
    - ``azure``: ``KEEL_AZURE_OPENAI_ENDPOINT`` + ``_API_VERSION`` and ``_API_KEY``, or
      ``KEEL_AZURE_OPENAI_USE_ENTRA=true`` for a managed / workload identity.
    """
    if provider == "openai":
        key = settings.llm_api_key
        return AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=key.get_secret_value() if key else "unused",
            max_retries=0,
            timeout=timeout,
        )
    if not settings.azure_openai_endpoint:
        raise KeelError(ErrorCode.LLM_NOT_CONFIGURED, f"{what} needs KEEL_AZURE_OPENAI_ENDPOINT")
    key = settings.azure_openai_api_key
    if key is not None:
        return AsyncAzureOpenAI(
            azure_endpoint=settings.azure_openai_endpoint,
            api_version=settings.azure_openai_api_version,
            api_key=key.get_secret_value(),
            max_retries=0,
            timeout=timeout,
        )
    if settings.azure_openai_use_entra:
        return AsyncAzureOpenAI(
            azure_endpoint=settings.azure_openai_endpoint,
            api_version=settings.azure_openai_api_version,
            azure_ad_token_provider=_azure_token_provider(),
            max_retries=0,
            timeout=timeout,
        )
    raise KeelError(
        ErrorCode.LLM_NOT_CONFIGURED,
        f"{what} needs KEEL_AZURE_OPENAI_API_KEY or KEEL_AZURE_OPENAI_USE_ENTRA=true",
    )
