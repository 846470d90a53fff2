"""Keel's Python SDK: ``KeelClient`` (sync) and ``AsyncKeelClient`` (asyncio).

    from keel_sdk import KeelClient
    with KeelClient(base_url="http://127.0.0.1:8000", api_key="keel_…") as keel:
        answer = keel.chat("hello")
        print(answer.message.content)

Models (``keel_sdk.models``) are generated from Keel's OpenAPI document; stream events
are in ``keel_sdk.events``; every failure is a ``KeelError`` (``keel_sdk.errors``).
See docs/sdk.md.
"""

from keel_sdk import events, models
from keel_sdk._async import AsyncChatStream, AsyncKeelClient
from keel_sdk._base import RetryPolicy, UploadProgress
from keel_sdk._sync import ChatStream, KeelClient
from keel_sdk._version import __version__
from keel_sdk.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    KeelError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from keel_sdk.events import (
    ApprovalDecided,
    ApprovalRequired,
    BudgetWarning,
    Citation,
    Error,
    MessageDelta,
    MessageReset,
    StreamEvent,
    TurnCompleted,
    TurnStarted,
    UnknownEvent,
)
from keel_sdk.models import ChatResponse

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ApprovalDecided",
    "ApprovalRequired",
    "AsyncChatStream",
    "AsyncKeelClient",
    "AuthenticationError",
    "BadRequestError",
    "BudgetWarning",
    "ChatResponse",
    "ChatStream",
    "Citation",
    "ConflictError",
    "Error",
    "InternalServerError",
    "KeelClient",
    "KeelError",
    "MessageDelta",
    "MessageReset",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "StreamEvent",
    "TurnCompleted",
    "TurnStarted",
    "UnknownEvent",
    "UnprocessableEntityError",
    "UploadProgress",
    "__version__",
    "events",
    "models",
]
