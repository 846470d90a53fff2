"""The API as ``keel api`` and ``keel dev`` serve it: ``api.main.create_app`` plus, when
``KEEL_SLACK_BOT_TOKEN`` is set, Slack's HTTP endpoints (``/slack/*``, slack_app.routes)."""

from __future__ import annotations

from fastapi import FastAPI

from api.main import create_app
from infra.settings import Settings
from slack_app.routes import add_slack_routes


def build_api(settings: Settings) -> FastAPI:
    app = create_app(settings)
    if settings.slack_enabled:
        add_slack_routes(app, settings)
    return app
