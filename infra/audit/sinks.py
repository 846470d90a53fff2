"""Where the audit export schedule sends the trail: a webhook and/or syslog.

* ``webhook`` (``KEEL_AUDIT_WEBHOOK_URL``): one ``POST`` per batch, body
  ``{"sink": "webhook", "events": [<row>, ...]}`` (rows as in ``keel audit
  export``), header ``X-Keel-Signature: sha256=<hex HMAC-SHA256 of the body>``
  keyed with ``KEEL_AUDIT_WEBHOOK_SECRET`` (absent when no secret is set) and
  ``X-Keel-Delivery: <first seq>-<last seq>``. Any 2xx is acceptance; anything
  else raises, and Temporal retries the batch.
* ``syslog`` (``KEEL_AUDIT_SYSLOG_ADDRESS``, ``host:port``): one RFC 5424 message
  per row over UDP (RFC 5426), facility ``log audit`` (13), severity notice for
  denials and failures, informational otherwise; MSGID is the event, the
  structured data carries ``seq`` and ``hash``, and MSG is the row's JSON.

Delivery is at least once: a receiver deduplicates on ``seq``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
from typing import Protocol

import httpx

from infra.db.audit_repo import AuditRecord
from infra.settings import Settings

SIGNATURE_HEADER = "X-Keel-Signature"
DELIVERY_HEADER = "X-Keel-Delivery"
SYSLOG_FACILITY_AUDIT = 13
SD_ID = "keel@32473"
_MAX_DATAGRAM = 60_000
_BOM = "\ufeff"


class SinkRejected(RuntimeError):
    """The sink did not accept a batch (retried by Temporal)."""


class AuditSink(Protocol):
    name: str

    async def send(self, records: list[AuditRecord]) -> None: ...

    async def aclose(self) -> None: ...


def sign(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, *, secret: bytes | None, timeout_s: float = 10.0) -> None:
        self._url = url
        self._secret = secret
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        body = json.dumps(
            {"sink": self.name, "events": [r.model_dump(mode="json") for r in records]},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: f"{records[0].seq}-{records[-1].seq}"}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        try:
            response = await self._http.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SinkRejected(f"audit webhook unreachable: {type(exc).__name__}") from exc
        if not response.is_success:
            raise SinkRejected(f"audit webhook answered {response.status_code}")

    async def aclose(self) -> None:
        await self._http.aclose()


def parse_address(address: str, *, default_port: int = 514) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host (port 514)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port else default_port
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host:
        return address, default_port
    return host, int(port)


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_token(value: str, *, limit: int) -> str:
    token = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return token or "-"


def syslog_message(record: AuditRecord, *, hostname: str, procid: str) -> bytes:
    """One RFC 5424 message for ``record``."""
    severity = 5 if record.outcome in ("denied", "failure") else 6
    timestamp = record.occurred_at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    structured = f'[{SD_ID} seq="{record.seq}" hash="{_sd_value(record.hash)}"]'
    header = (
        f"<{SYSLOG_FACILITY_AUDIT * 8 + severity}>1 {timestamp} {_header_token(hostname, limit=255)} keel "
        f"{_header_token(procid, limit=128)} {_header_token(record.event, limit=32)} {structured} "
    )
    message = (header + _BOM + record.json_line()).encode()
    if len(message) > _MAX_DATAGRAM:
        trimmed = record.model_copy(update={"details": {"truncated": True}})
        message = (header + _BOM + trimmed.json_line()).encode()
    return message


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.error: Exception | None = None

    def error_received(self, exc: Exception) -> None:
        self.error = exc


class SyslogSink:
    name = "syslog"

    def __init__(self, address: str) -> None:
        self._host, self._port = parse_address(address)
        self._hostname = socket.gethostname()
        self._procid = str(os.getpid())

    async def send(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=(self._host, self._port)
            )
        except OSError as exc:
            raise SinkRejected(f"audit syslog address unusable: {exc}") from exc
        try:
            for record in records:
                transport.sendto(syslog_message(record, hostname=self._hostname, procid=self._procid))
                if protocol.error is not None:
                    raise SinkRejected(f"audit syslog send failed: {protocol.error}")
        finally:
            transport.close()

    async def aclose(self) -> None:
        return None


def build_sinks(settings: Settings) -> dict[str, AuditSink]:
    """The sinks the settings configure, by name."""
    sinks: dict[str, AuditSink] = {}
    if settings.audit_webhook_url:
        secret = settings.audit_webhook_secret
        sinks["webhook"] = WebhookSink(
            settings.audit_webhook_url, secret=secret.get_secret_value().encode() if secret else None
        )
    if settings.audit_syslog_address:
        sinks["syslog"] = SyslogSink(settings.audit_syslog_address)
    return sinks
