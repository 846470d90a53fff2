"""Export through the ``keel-audit-export`` schedule on the real Temporal dev server
to a webhook (a local HTTP receiver that refuses the first delivery) and to syslog
(a local UDP socket): every event arrives once per sink, signed, and each sink's
cursor moves only past what it accepted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from core.models.audit import AuditEntry, AuditEvent
from infra.audit.log import AuditLog
from infra.audit.sinks import DELIVERY_HEADER, SIGNATURE_HEADER
from infra.settings import Settings
from infra.temporal_setup import remove_schedule
from workers.audit_worker import EXPORT_SCHEDULE_ID, running_audit_worker

pytestmark = pytest.mark.slow

SECRET = "webhook-secret"
_SYSLOG = re.compile(
    r"^<(?P<pri>\d+)>1 (?P<ts>\S+) (?P<host>\S+) keel (?P<pid>\S+) (?P<msgid>\S+) "
    r'\[keel@32473 seq="(?P<seq>\d+)" hash="(?P<hash>[0-9a-f]{64})"\] \ufeff(?P<msg>.*)$',
    re.DOTALL,
)


class WebhookReceiver:
    """Answers 503 to the first delivery, then 204; keeps what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.refused == 0:
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.accepted.append((dict(self.headers.items()), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/audit-hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        return [e for _, body in self.accepted for e in json.loads(body)["events"]]


class SyslogReceiver:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.messages.append(data.decode())

    def __enter__(self) -> SyslogReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def syslog() -> Iterator[SyslogReceiver]:
    with SyslogReceiver() as receiver:
        yield receiver


async def _run_export(client: Client) -> None:
    """Trigger the schedule and wait until the run it started has finished."""
    handle = client.get_schedule_handle(EXPORT_SCHEDULE_ID)
    before = len((await handle.describe()).info.recent_actions)
    await handle.trigger()
    for _ in range(600):
        info = (await handle.describe()).info
        if len(info.recent_actions) > before and not info.running_actions:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the export run did not finish")


async def test_schedule_exports_each_event_once_to_webhook_and_syslog(
    audit_settings: Settings,
    audit_pool: asyncpg.Pool,
    temporal_client: Client,
    webhook: WebhookReceiver,
    syslog: SyslogReceiver,
) -> None:
    settings = audit_settings.model_copy(
        update={
            "audit_webhook_url": webhook.url,
            "audit_webhook_secret": SecretStr(SECRET),
            "audit_syslog_address": syslog.address,
            "audit_export_interval_s": 3600,  # runs when the test triggers it
        }
    )
    audit = AuditLog(audit_pool, hmac_key=settings.resolved_audit_hmac_key)
    for i in range(5):
        await audit.record(
            AuditEntry(
                event=AuditEvent.ACCESS_DENIED if i == 2 else AuditEvent.DOCUMENT_UPLOADED,
                user_id=f"exp-{i}",
                outcome="denied" if i == 2 else "success",
                details={"quote": 'a "quoted" ] value', "i": i},
            )
        )
    try:
        async with running_audit_worker(temporal_client, settings):
            await _run_export(temporal_client)
            assert webhook.refused == 1  # the first delivery failed and was retried
            assert [e["seq"] for e in webhook.events()] == [1, 2, 3, 4, 5]
            for headers, body in webhook.accepted:
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                assert headers[SIGNATURE_HEADER] == expected
                assert headers[DELIVERY_HEADER] == "1-5"
            cursors = {
                r["sink"]: r["last_seq"] for r in await audit_pool.fetch("SELECT * FROM audit_export_cursors")
            }
            assert cursors == {"webhook": 5, "syslog": 5}

            for _ in range(50):
                if len(syslog.messages) >= 5:
                    break
                await asyncio.sleep(0.1)
            parsed = [_SYSLOG.match(m) for m in syslog.messages]
            assert all(parsed), syslog.messages
            by_seq = {int(m["seq"]): m for m in parsed if m}
            assert sorted(by_seq) == [1, 2, 3, 4, 5] and len(syslog.messages) == 5
            assert by_seq[3]["pri"] == str(13 * 8 + 5) and by_seq[3]["msgid"] == "access.denied"
            assert by_seq[1]["pri"] == str(13 * 8 + 6) and by_seq[1]["msgid"] == "document.uploaded"
            row = json.loads(by_seq[1]["msg"])
            assert row["user_id"] == "exp-0" and row["hash"] == by_seq[1]["hash"]
            assert row["details"]["quote"] == 'a "quoted" ] value'

            # Only what is new goes out next time.
            await audit.record(AuditEntry(event=AuditEvent.LOGOUT, user_id="exp-late"))
            await _run_export(temporal_client)
            assert [e["seq"] for e in webhook.events()] == [1, 2, 3, 4, 5, 6]
            for _ in range(50):
                if len(syslog.messages) >= 6:
                    break
                await asyncio.sleep(0.1)
            assert sorted(int(m["seq"]) for m in map(_SYSLOG.match, syslog.messages) if m) == [
                1,
                2,
                3,
                4,
                5,
                6,
            ]
            cursors = {
                r["sink"]: r["last_seq"] for r in await audit_pool.fetch("SELECT * FROM audit_export_cursors")
            }
            assert cursors == {"webhook": 6, "syslog": 6}
    finally:
        await remove_schedule(temporal_client, EXPORT_SCHEDULE_ID)
