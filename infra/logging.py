"""structlog setup: JSON lines carrying request id, user id, session id, trace id.

Context is bound with ``structlog.contextvars`` (the API binds request id and
user id per request; activities bind session and turn ids), so every log line
written while handling a request or turn carries them. With tracing on
(infra.tracing), a line written under a recording span carries its ``trace_id`` and
``span_id`` (in an activity too: the Temporal interceptor gives it a span).
"""

from __future__ import annotations

import logging
import sys

import structlog

from infra.tracing import current_ids


def add_trace_ids(
    logger: object, method_name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """``trace_id`` / ``span_id`` (hex) of the recording span, when there is one."""
    ids = current_ids()
    if ids is not None:
        event_dict["trace_id"], event_dict["span_id"] = ids
    return event_dict


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "openai", "agent_framework", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
