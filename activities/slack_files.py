"""A file shared with the bot in a DM: fetched with the bot's token and stored as a
document of the person's personal knowledge base, with the upload route's rules
(size limit, in-flight limit, identical bytes answer the existing document, same name
with other bytes is a new version). The workflow then ingests it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import structlog
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.slack_errors import slack_failure
from activities.slack_people import SlackPeople
from activities.slack_turns import refusal_text, slack_principal
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.slack import SlackFileImport, SlackFileShare, SlackReply
from core.policy.permissions import Permission, is_granted
from infra.audit.log import AuditLog
from infra.blobstore import BlobStore
from infra.db.knowledge_repo import KnowledgeRepository
from infra.settings import Settings
from infra.slack_web import ChannelPacer, SlackCallFailed, SlackRateLimited, slack_call
from infra.temporal_client import stop_superseded_ingestion

log = structlog.get_logger(__name__)

_READ_CHUNK = 1024 * 1024


class _TooLarge(Exception):
    pass


class SlackFileActivities:
    def __init__(
        self,
        *,
        slack: AsyncWebClient,
        settings: Settings,
        temporal: Client,
        people: SlackPeople,
        knowledge_repo: KnowledgeRepository,
        blobs: BlobStore,
        audit: AuditLog,
        pacer: ChannelPacer,
    ) -> None:
        self._slack = slack
        self._settings = settings
        self._temporal = temporal
        self._people = people
        self._repo = knowledge_repo
        self._blobs = blobs
        self._audit = audit
        self._pacer = pacer

    @activity.defn
    async def import_file(self, share: SlackFileShare) -> SlackFileImport:
        try:
            return await self._import(share)
        except (SlackCallFailed, SlackRateLimited) as err:
            raise slack_failure(err) from err

    async def _import(self, share: SlackFileShare) -> SlackFileImport:
        person = await self._people.resolve(share.team_id, share.slack_user_id)
        if person.principal is None:  # told why, as a turn would be (docs/slack.md#identity)
            reason = person.refusal or "unknown_user"
            return SlackFileImport(
                status="refused",
                notice=refusal_text(reason, self._settings.web_base_url, then="share the file again"),
            )
        principal = slack_principal(person.principal)
        if not is_granted(principal, Permission.UPLOAD_DOCS):
            return SlackFileImport(status="refused", notice="Your Keel account may not add documents.")
        info = (await slack_call(self._slack, "files.info", file=share.file_id)).get("file") or {}
        name = (
            str(info.get("name") or info.get("title") or "document")
            .replace("/", "_")
            .replace("\\", "_")[:255]
        )
        limit = self._settings.ingest_max_file_bytes
        if int(info.get("size") or 0) > limit:
            return SlackFileImport(
                status="refused",
                filename=name,
                notice=f"❌ *{name}* is larger than the limit of {limit} bytes.",
            )
        busy = await self._repo.processing_count(created_by=principal.user_id)
        if busy >= self._settings.ingest_max_in_flight_per_user:
            raise ApplicationError(  # retried: a slot frees as the others finish
                f"{busy} of your documents are still processing", type=ErrorCode.INGEST_BUSY
            )
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        doc_id = "doc-" + uuid.uuid4().hex[:24]
        blob_key = f"documents/{doc_id}"
        try:
            blob = await self._blobs.put_stream(blob_key, self._download(url, limit))
        except _TooLarge:
            return SlackFileImport(
                status="refused",
                filename=name,
                notice=f"❌ *{name}* is larger than the limit of {limit} bytes.",
            )
        kb = await self._repo.ensure_personal_kb(
            principal.user_id, display_name=principal.display_name, email=principal.email
        )
        result = await self._repo.add_upload(
            kb_id=kb.id,
            filename=name,
            id=doc_id,
            title=name,
            content_type=str(info.get("mimetype") or "") or None,
            size_bytes=blob.size_bytes,
            sha256=blob.sha256,
            blob_key=blob_key,
            source="upload",  # documents.source is manual|upload|sync; the audit says channel: slack
            owner_type=kb.owner_type,
            owner_id=kb.owner_id,
            status="processing",
            created_by=principal.user_id,
        )
        if result.orphan_blob_key is not None:
            await self._blobs.delete(result.orphan_blob_key)
        doc = result.document
        await self._audit.record(
            AuditEntry(
                event=AuditEvent.DOCUMENT_UPLOADED,
                user_id=principal.user_id,
                resource_type="document",
                resource_id=doc.id,
                details={
                    "knowledge_base_id": doc.kb_id,
                    "size_bytes": doc.size_bytes,
                    "outcome": result.outcome,
                    "version": doc.version,
                    "channel": "slack",
                },
                dedupe_key=f"document.uploaded:slack:{share.team_id}:{share.file_id}:{doc.id}:{doc.version}",
            )
        )
        if result.outcome == "duplicate":
            return SlackFileImport(
                status="duplicate",
                document_id=doc.id,
                version=doc.version,
                filename=name,
                user_id=principal.user_id,
                notice=f"*{name}* is already in your personal knowledge base.",
            )
        if result.outcome == "new_version":
            await stop_superseded_ingestion(self._temporal, doc.id, doc.version)
        return SlackFileImport(
            status="ingesting",
            document_id=doc.id,
            version=doc.version,
            filename=name,
            user_id=principal.user_id,
        )

    async def _download(self, url: str, limit: int) -> AsyncIterator[bytes]:
        """The file's bytes, with the bot token (Slack answers a sign-in page without it)."""
        if urlsplit(url).scheme not in ("https", "http"):
            raise ApplicationError(
                "the file has no download link", type=ErrorCode.INVALID_REQUEST, non_retryable=True
            )
        token = self._slack.token or ""
        async with (
            httpx.AsyncClient(timeout=60, follow_redirects=True) as http,
            http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            if response.status_code != 200:
                raise ApplicationError(
                    f"Slack answered {response.status_code} for the file", type="slack_error"
                )
            if response.headers.get("content-type", "").startswith("text/html") and not url.endswith(".html"):
                raise ApplicationError(
                    "Slack answered a sign-in page instead of the file (is the bot token valid?)",
                    type="slack_error",
                    non_retryable=True,
                )
            size = 0
            async for chunk in response.aiter_bytes(_READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
                yield chunk

    @activity.defn
    async def post_reply(self, reply: SlackReply) -> None:
        await self._pacer.wait(reply.channel_id)
        try:
            await slack_call(
                self._slack,
                "chat.postMessage",
                channel=reply.channel_id,
                thread_ts=reply.thread_ts,
                text=reply.text,
                unfurl_links=False,
                unfurl_media=False,
            )
        except (SlackCallFailed, SlackRateLimited) as err:
            raise slack_failure(err) from err
