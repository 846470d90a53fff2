"""The chat model: agent-framework's chat-completions client on an OpenAI SDK
client from infra/openai_clients.py, whose own retries are off (Temporal's RetryPolicy
is the one retry layer).

- Any OpenAI-compatible server: ``KEEL_LLM_BASE_URL`` + ``KEEL_LLM_API_KEY`` + ``KEEL_LLM_MODEL``.
- Azure OpenAI / Azure AI Foundry: ``KEEL_AZURE_OPENAI_ENDPOINT`` + ``..._DEPLOYMENT`` +
  ``..._API_VERSION`` and either ``..._API_KEY`` or ``KEEL_AZURE_OPENAI_USE_ENTRA=true``
  (a managed identity / workload identity through azure-identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from agent_framework import ChatResponse, ChatResponseUpdate, Message, ResponseStream
from agent_framework.observability import disable_instrumentation
from agent_framework.openai import OpenAIChatCompletionClient
from openai import AsyncOpenAI, Timeout

from core.errors import ErrorCode, KeelError
from infra.openai_clients import openai_client
from infra.settings import Settings


def _openai_client(settings: Settings) -> AsyncOpenAI | None:
    # read: the longest silence between two streamed chunks; the rest bounds the whole call.
    timeout = Timeout(settings.llm_stream_timeout_s, connect=10.0, read=settings.llm_timeout_s)
    provider = settings.llm_provider
    if provider in ("openai", "azure"):
        return openai_client(settings, provider=provider, timeout=timeout, what="Azure OpenAI")
    return None


class ChatModel:
    """One configured chat model; ``stream`` makes exactly one model call."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sdk = _openai_client(settings)
        self.model_name = settings.llm_model_name
        #: ``gen_ai.provider.name`` and ``server.address`` of the model's spans (infra.call_spans).
        self.provider_name = "azure.ai.openai" if settings.llm_provider == "azure" else "openai"
        base = settings.azure_openai_endpoint if settings.llm_provider == "azure" else settings.llm_base_url
        self.server_address = urlsplit(base).hostname if base else "api.openai.com"
        # Keel writes the GenAI spans itself (infra.call_spans): agent-framework's would repeat them.
        disable_instrumentation()
        self._client: OpenAIChatCompletionClient[Any] | None = None
        if self._sdk is not None:
            # The tool loop lives in the chat workflow: the client only reports tool calls.
            self._client = OpenAIChatCompletionClient(
                model=self.model_name,
                async_client=self._sdk,
                function_invocation_configuration={"enabled": False},
            )

    @property
    def configured(self) -> bool:
        return self._client is not None

    def stream(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        tools: Sequence[dict[str, Any]] = (),
        temperature: float | None = None,
        max_output_tokens: int | None = None,
    ) -> ResponseStream[ChatResponseUpdate, ChatResponse[Any]]:
        if self._client is None:
            raise KeelError(ErrorCode.LLM_NOT_CONFIGURED, "no model is configured")
        options: dict[str, Any] = {"max_tokens": max_output_tokens or self._settings.llm_max_output_tokens}
        if model:
            options["model"] = model
        temperature = temperature if temperature is not None else self._settings.llm_temperature
        if temperature is not None:
            options["temperature"] = temperature
        if tools:
            options["tools"] = list(tools)
        return self._client.get_response(messages, stream=True, options=options)

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()
