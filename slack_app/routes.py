"""``/slack/events``, ``/slack/interactions``, ``/slack/commands``: Slack's HTTP
deliveries, verified and handed to the bolt app.

The signature is checked here first, with Slack's own verifier (HMAC-SHA256 of
``v0:{timestamp}:{body}`` under the signing secret; a timestamp more than 5 minutes
off is refused), so a forged or replayed request gets Keel's error shape
(``401 invalid_signature`` with a request id) and never reaches a listener.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from api.errors import ApiError
from core.errors import ErrorCode
from infra.settings import Settings
from slack_app.bolt_app import build_bolt_app


class _SlackDoor:
    def __init__(self, app: FastAPI, settings: Settings) -> None:
        if settings.slack_signing_secret is None:
            raise RuntimeError("KEEL_SLACK_SIGNING_SECRET is required for the /slack/* endpoints")
        self._app = app
        self._settings = settings
        self._verifier = SignatureVerifier(settings.slack_signing_secret.get_secret_value())
        self._handler: AsyncSlackRequestHandler | None = None

    def handler(self) -> AsyncSlackRequestHandler:
        if self._handler is None:  # the Temporal client exists once the API's lifespan ran
            resources = self._app.state.resources
            if resources is None:
                raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, "the API is starting", status=503)
            self._handler = AsyncSlackRequestHandler(build_bolt_app(self._settings, resources.temporal))
        return self._handler

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if not self._verifier.is_valid_request(body, dict(request.headers)):
            raise ApiError(ErrorCode.INVALID_SIGNATURE, "the request is not signed by Slack, or is too old")
        return await self.handler().handle(request)


def add_slack_routes(app: FastAPI, settings: Settings) -> None:
    """Mount Slack's endpoints on the API (``keel api`` / ``keel dev`` do when
    ``KEEL_SLACK_BOT_TOKEN`` is set)."""
    door = _SlackDoor(app, settings)
    router = APIRouter(prefix="/slack", tags=["slack"], include_in_schema=False)

    @router.post("/events")
    async def slack_events(request: Request) -> Response:
        return await door.handle(request)

    @router.post("/interactions")
    async def slack_interactions(request: Request) -> Response:
        return await door.handle(request)

    @router.post("/commands")
    async def slack_commands(request: Request) -> Response:
        return await door.handle(request)

    app.include_router(router)
