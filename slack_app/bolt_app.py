"""The slack-bolt app (async): Keel's listeners on a client that speaks to
``KEEL_SLACK_API_URL``. The same app serves the HTTP endpoints (``routes``) and
Socket Mode (``socket_mode``)."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client

from infra.settings import Settings
from slack_app.handlers import SlackStarter, register


def build_bolt_app(settings: Settings, temporal: Client) -> AsyncApp:
    if settings.slack_bot_token is None:
        raise RuntimeError("KEEL_SLACK_BOT_TOKEN is not set")
    token = settings.slack_bot_token.get_secret_value()
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = AsyncApp(
        signing_secret=secret,  # the token comes with the client
        client=AsyncWebClient(token=token, base_url=settings.slack_api_url, timeout=10, retry_handlers=[]),
        # Listeners only start a workflow (milliseconds), so Slack is answered after it
        # started: an event is either in a workflow or refused (and Slack retries it).
        process_before_response=True,
        request_verification_enabled=secret is not None,
        # Events from another workspace, or before auth.test answers, are refused by bolt.
        raise_error_for_unhandled_request=False,
    )
    register(app, SlackStarter(temporal, settings))
    return app
