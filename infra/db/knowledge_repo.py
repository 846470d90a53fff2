"""Knowledge bases, documents and chunk texts in Postgres.

Every caller-facing read takes the ``AclFilter`` built by
``core.policy.acl.acl_filter`` and translates it into SQL (``infra.db.acl_sql``),
so Postgres follows the same rule as Qdrant. A row the caller may not read is
simply absent. Writes used by ingestion activities are idempotent.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal, NamedTuple

import asyncpg
from pydantic import BaseModel

from core.ingest.chunking import Chunk
from core.models.documents import DocumentView, FailedOperationView
from core.policy.acl import AclFilter
from infra.db.acl_sql import acl_sql


class KnowledgeBaseRecord(BaseModel):
    id: str
    name: str
    description: str
    owner_type: str
    owner_id: str
    created_by: str
    created_at: datetime
    #: A personal knowledge base's owner as their last sign-in named them (issue 10).
    owner_display_name: str | None = None
    owner_email: str | None = None


class DocumentRecord(DocumentView):
    """A document row: the public view, and where its bytes are and who added them."""

    sha256: str
    blob_key: str
    source: str
    created_by: str


class ChunkText(BaseModel):
    doc_id: str
    chunk_index: int
    text: str
    page: int | None
    strategy: str
    heading: str | None


UploadOutcome = Literal["created", "duplicate", "new_version"]


class UploadResult(NamedTuple):
    """What an upload made of the knowledge base (:meth:`KnowledgeRepository.add_upload`)."""

    document: DocumentRecord
    outcome: UploadOutcome
    #: The blob no row references any more (the new one of a duplicate, the old one of a
    #: new version): the caller deletes it once the transaction has committed.
    orphan_blob_key: str | None


class FailedOperationRecord(FailedOperationView):
    """A failed-operations row: exactly what an admin reads of it (``FailedOperationView``)."""


class LockedDocument:
    """A document's row held ``FOR UPDATE`` until the ``locked_document`` block ends.

    Every change to what a document's chunks may be read by -- stamping the ACL on a
    batch of new vectors, sharing, unsharing, deleting -- happens inside this lock,
    together with the matching vector-store write. So the changes are applied one at
    a time per document, and each sees the one before it: a batch indexed during an
    unshare carries the new ACL or is rewritten by it, and no batch is written after
    a delete removed the vectors.
    """

    def __init__(self, conn: asyncpg.Connection, record: DocumentRecord) -> None:
        self._conn = conn
        self.record = record

    async def change_shares(self, *, add: Sequence[str], remove: Sequence[str]) -> list[str]:
        shared = sorted((set(self.record.shared_with) | set(add)) - set(remove))
        visibility = "shared" if shared else "private"
        await self._conn.execute(
            "UPDATE documents SET shared_with = $2, visibility = $3, updated_at = now() WHERE id = $1",
            self.record.id,
            shared,
            visibility,
        )
        self.record = self.record.model_copy(update={"shared_with": shared, "visibility": visibility})
        return shared

    async def replace_chunks(self, chunks: Sequence[Chunk]) -> None:
        await self._conn.execute("DELETE FROM document_chunks WHERE doc_id = $1", self.record.id)
        await self._conn.copy_records_to_table(
            "document_chunks",
            records=[(self.record.id, c.index, c.text, c.page, c.strategy, c.heading) for c in chunks],
            columns=["doc_id", "chunk_index", "text", "page", "strategy", "heading"],
        )

    async def mark_deleting(self) -> None:
        await self._conn.execute(
            "UPDATE documents SET status = 'deleting', updated_at = now() WHERE id = $1", self.record.id
        )
        self.record = self.record.model_copy(update={"status": "deleting"})


def personal_kb_id(user_id: str) -> str:
    return "kb-u-" + hashlib.sha256(user_id.encode()).hexdigest()[:24]


class KnowledgeRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------- knowledge bases
    async def ensure_personal_kb(
        self, user_id: str, *, display_name: str | None = None, email: str | None = None
    ) -> KnowledgeBaseRecord:
        """The user's personal knowledge base, created on first use; the owner's name and
        email (when their sign-in carries them) are kept up to date for others' lists."""
        kb_id = personal_kb_id(user_id)
        row = await self._pool.fetchrow(
            "INSERT INTO knowledge_bases (id, name, owner_type, owner_id, created_by,"
            " owner_display_name, owner_email) VALUES ($1, 'Personal', 'user', $2, $3, $4, $5)"
            " ON CONFLICT (id) DO UPDATE SET"
            " owner_display_name = COALESCE(EXCLUDED.owner_display_name, knowledge_bases.owner_display_name),"
            " owner_email = COALESCE(EXCLUDED.owner_email, knowledge_bases.owner_email)"
            " RETURNING *",
            kb_id,
            f"user:{user_id}",
            user_id,
            display_name,
            email,
        )
        return KnowledgeBaseRecord(**dict(row))

    async def create_kb(
        self, *, name: str, description: str, owner_type: str, owner_id: str, created_by: str
    ) -> KnowledgeBaseRecord:
        row = await self._pool.fetchrow(
            "INSERT INTO knowledge_bases (id, name, description, owner_type, owner_id, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            "kb-" + uuid.uuid4().hex[:24],
            name,
            description,
            owner_type,
            owner_id,
            created_by,
        )
        return KnowledgeBaseRecord(**dict(row))

    async def get_kb(self, kb_id: str) -> KnowledgeBaseRecord | None:
        row = await self._pool.fetchrow("SELECT * FROM knowledge_bases WHERE id = $1", kb_id)
        return KnowledgeBaseRecord(**dict(row)) if row else None

    async def readable_kbs(self, acl: AclFilter) -> list[KnowledgeBaseRecord]:
        """Org KBs, the caller's own, and those holding a document shared with the caller."""
        if acl.also_readable_by:  # a listing for one person: an audience filter would be ignored here
            raise ValueError("readable_kbs takes one principal's filter, not an audience's")
        rows = await self._pool.fetch(
            "SELECT * FROM knowledge_bases k WHERE k.owner_type = 'org'"
            " OR (k.owner_type = 'user' AND k.owner_id = $1)"
            " OR EXISTS (SELECT 1 FROM documents d WHERE d.kb_id = k.id AND d.status <> 'deleting'"
            " AND d.shared_with && $2::text[])"
            " ORDER BY k.owner_type DESC, k.created_at",
            acl.user_principal,
            list(acl.shared_principals),
        )
        return [KnowledgeBaseRecord(**dict(r)) for r in rows]

    # ------------------------------------------------------------- documents
    async def insert_document(self, **fields: Any) -> DocumentRecord:
        columns = ", ".join(fields)
        placeholders = ", ".join(f"${i}" for i in range(1, len(fields) + 1))
        row = await self._pool.fetchrow(
            f"INSERT INTO documents ({columns}) VALUES ({placeholders}) RETURNING *",  # noqa: S608 - keys are ours
            *fields.values(),
        )
        return DocumentRecord(**dict(row))

    async def add_upload(self, *, kb_id: str, filename: str, **fields: Any) -> UploadResult:
        """Add an uploaded file (already in the blob store) to a knowledge base: one
        document per file.

        Under a per-knowledge-base lock, so concurrent uploads of one file make one
        document: bytes already in the knowledge base (same sha256) answer that document
        unchanged; a file under a name already there becomes that document's next version
        (same id and shares, ``processing`` again, the old blob orphaned); anything else is
        a new document. The document's row is held ``FOR UPDATE`` while its version moves,
        the same lock ingestion batches and ACL changes take (``locked_document``).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"kb-upload:{kb_id}")
            same_bytes = await conn.fetchrow(
                "SELECT * FROM documents WHERE kb_id = $1 AND sha256 = $2 AND status <> 'deleting'"
                " ORDER BY created_at LIMIT 1",
                kb_id,
                fields["sha256"],
            )
            if same_bytes is not None:
                return UploadResult(DocumentRecord(**dict(same_bytes)), "duplicate", fields["blob_key"])
            same_name = await conn.fetchrow(
                "SELECT * FROM documents WHERE kb_id = $1 AND filename = $2 AND status <> 'deleting'"
                " ORDER BY created_at LIMIT 1 FOR UPDATE",
                kb_id,
                filename,
            )
            if same_name is not None:
                row = await conn.fetchrow(
                    "UPDATE documents SET version = version + 1, status = 'processing', title = $2,"
                    " content_type = $3, size_bytes = $4, sha256 = $5, blob_key = $6, doc_type = NULL,"
                    " chunk_count = 0, page_count = 0, error_code = NULL, error_message = NULL,"
                    " created_by = $7, updated_at = now() WHERE id = $1 RETURNING *",
                    same_name["id"],
                    fields["title"],
                    fields["content_type"],
                    fields["size_bytes"],
                    fields["sha256"],
                    fields["blob_key"],
                    fields["created_by"],
                )
                return UploadResult(DocumentRecord(**dict(row)), "new_version", same_name["blob_key"])
            columns = ["kb_id", "filename", *fields]
            placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            row = await conn.fetchrow(
                f"INSERT INTO documents ({', '.join(columns)}) VALUES ({placeholders}) RETURNING *",  # noqa: S608 - keys are ours
                kb_id,
                filename,
                *fields.values(),
            )
            return UploadResult(DocumentRecord(**dict(row)), "created", None)

    async def readable_document(self, doc_id: str, acl: AclFilter) -> DocumentRecord | None:
        cond, params = acl_sql(acl, first_param=2)
        row = await self._pool.fetchrow(
            f"SELECT d.* FROM documents d WHERE d.id = $1 AND d.status <> 'deleting' AND {cond}",  # noqa: S608
            doc_id,
            *params,
        )
        return DocumentRecord(**dict(row)) if row else None

    async def readable_documents(self, acl: AclFilter, *, limit: int = 500) -> list[DocumentRecord]:
        cond, params = acl_sql(acl, first_param=1)
        rows = await self._pool.fetch(
            f"SELECT d.* FROM documents d WHERE d.status <> 'deleting' AND {cond}"  # noqa: S608
            f" ORDER BY d.created_at DESC LIMIT {int(limit)}",
            *params,
        )
        return [DocumentRecord(**dict(r)) for r in rows]

    async def any_readable_ready(self, acl: AclFilter) -> bool:
        """Whether the caller can read at least one ready document (else chat skips the search)."""
        cond, params = acl_sql(acl, first_param=1)
        found: bool = await self._pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM documents d WHERE d.status = 'ready' AND {cond})",  # noqa: S608
            *params,
        )
        return found

    async def processing_count(self, *, created_by: str) -> int:
        """Documents this user uploaded that are still being ingested (the in-flight limit)."""
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM documents WHERE created_by = $1 AND status = 'processing'", created_by
        )
        return count

    async def document(self, doc_id: str) -> DocumentRecord | None:
        """System read (activities): no ACL."""
        row = await self._pool.fetchrow("SELECT * FROM documents WHERE id = $1", doc_id)
        return DocumentRecord(**dict(row)) if row else None

    async def set_status(self, doc_id: str, status: str) -> None:
        await self._pool.execute(
            "UPDATE documents SET status = $2, updated_at = now() WHERE id = $1", doc_id, status
        )

    async def mark_document(
        self,
        doc_id: str,
        *,
        status: str,
        version: int | None = None,
        chunk_count: int,
        page_count: int,
        doc_type: str | None,
        title: str | None,
        error_code: str | None,
        error_message: str | None,
    ) -> None:
        await self._pool.execute(
            "UPDATE documents SET status = $2, chunk_count = $3, page_count = $4,"
            " doc_type = COALESCE($5, doc_type), title = COALESCE($6, title), error_code = $7,"
            " error_message = $8, updated_at = now() WHERE id = $1 AND status <> 'deleting'"
            " AND ($9::int IS NULL OR version = $9)",
            doc_id,
            status,
            chunk_count,
            page_count,
            doc_type,
            title,
            error_code,
            error_message,
            version,
        )

    @asynccontextmanager
    async def locked_document(self, doc_id: str) -> AsyncIterator[LockedDocument | None]:
        """The document's current row, locked until the block ends (``None`` when it is gone).

        The block's writes commit when it ends, after whatever else it did (the vector
        store write); an exception rolls them back.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM documents WHERE id = $1 FOR UPDATE", doc_id)
            yield LockedDocument(conn, DocumentRecord(**dict(row))) if row else None

    async def change_shares(self, doc_id: str, *, add: Sequence[str], remove: Sequence[str]) -> list[str]:
        """Postgres only (the ingestion activity changes the vectors in the same lock)."""
        async with self.locked_document(doc_id) as locked:
            return [] if locked is None else await locked.change_shares(add=add, remove=remove)

    async def readable_document_versions(self, doc_ids: Sequence[str], acl: AclFilter) -> dict[str, int]:
        """Which of ``doc_ids`` the caller may read now, with each one's current version:
        Postgres has the last word on every search result, so a vector payload that is
        stale for any reason (another ACL, an older version) never answers."""
        if not doc_ids:
            return {}
        cond, params = acl_sql(acl, first_param=2)
        rows = await self._pool.fetch(
            f"SELECT d.id, d.version FROM documents d WHERE d.id = ANY($1::text[])"  # noqa: S608
            f" AND d.status <> 'deleting' AND {cond}",
            list(doc_ids),
            *params,
        )
        return {r["id"]: r["version"] for r in rows}

    async def delete_document(self, doc_id: str) -> None:
        await self._pool.execute("DELETE FROM documents WHERE id = $1", doc_id)

    # ---------------------------------------------------------------- chunks
    async def chunks(self, doc_id: str, *, start: int, limit: int) -> list[ChunkText]:
        rows = await self._pool.fetch(
            "SELECT * FROM document_chunks WHERE doc_id = $1 AND chunk_index >= $2"
            " ORDER BY chunk_index LIMIT $3",
            doc_id,
            start,
            limit,
        )
        return [ChunkText(**dict(r)) for r in rows]

    async def chunk_texts(self, refs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], ChunkText]:
        if not refs:
            return {}
        rows = await self._pool.fetch(
            "SELECT c.* FROM document_chunks c JOIN unnest($1::text[], $2::int[]) AS r(doc_id, idx)"
            " ON c.doc_id = r.doc_id AND c.chunk_index = r.idx",
            [d for d, _ in refs],
            [i for _, i in refs],
        )
        return {(r["doc_id"], r["chunk_index"]): ChunkText(**dict(r)) for r in rows}

    # ------------------------------------------------------------- batches
    async def insert_batch(self, *, batch_id: str, kb_id: str, user_id: str, document_ids: list[str]) -> None:
        await self._pool.execute(
            "INSERT INTO ingestion_batches (id, kb_id, user_id, document_ids) VALUES ($1, $2, $3, $4)",
            batch_id,
            kb_id,
            user_id,
            document_ids,
        )

    async def batch_owner(self, batch_id: str) -> str | None:
        owner: str | None = await self._pool.fetchval(
            "SELECT user_id FROM ingestion_batches WHERE id = $1", batch_id
        )
        return owner

    # ------------------------------------------------------ failed operations
    async def record_failure(
        self, *, kind: str, resource_id: str, workflow_id: str, error_code: str, error_message: str
    ) -> None:
        await self._pool.execute(
            "INSERT INTO failed_operations (id, kind, resource_id, workflow_id, error_code, error_message)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (kind, resource_id) WHERE status = 'open' DO UPDATE"
            " SET error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,"
            " updated_at = now()",
            "fop-" + uuid.uuid4().hex[:24],
            kind,
            resource_id,
            workflow_id,
            error_code,
            error_message,
        )

    async def resolve_failures(self, *, kind: str, resource_id: str) -> None:
        await self._pool.execute(
            "UPDATE failed_operations SET status = 'resolved', updated_at = now()"
            " WHERE kind = $1 AND resource_id = $2 AND status <> 'resolved'",
            kind,
            resource_id,
        )

    async def failed_operations(self, *, status: str | None = "open") -> list[FailedOperationRecord]:
        rows = await self._pool.fetch(
            "SELECT * FROM failed_operations WHERE ($1::text IS NULL OR status = $1)"
            " ORDER BY created_at DESC",
            status,
        )
        return [FailedOperationRecord(**dict(r)) for r in rows]

    async def failed_operation(self, op_id: str) -> FailedOperationRecord | None:
        row = await self._pool.fetchrow("SELECT * FROM failed_operations WHERE id = $1", op_id)
        return FailedOperationRecord(**dict(row)) if row else None

    async def mark_retried(self, op_id: str) -> None:
        await self._pool.execute(
            "UPDATE failed_operations SET status = 'retried', retry_count = retry_count + 1,"
            " updated_at = now() WHERE id = $1",
            op_id,
        )
