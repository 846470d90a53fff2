"""Knowledge bases end to end: upload → IngestDocumentWorkflow → ready; query, share,
unshare, delete; org knowledge bases; bad files; failed operations and retry; batches.
Real Temporal, Postgres, the embedded vector engine and the bundled embedding model."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from pypdf import PdfWriter

from infra.blobstore import FilesystemBlobStore
from tests.conftest import RunningApi

pytestmark = pytest.mark.slow

HANDBOOK = (
    "Expense policy\n\nEmployees may claim travel expenses within thirty days. "
    "Receipts are required for every claim above twenty euros.\n\n"
    "Password resets\n\nTo reset your password open the self-service portal and choose "
    "'forgot password'. The reset link expires after one hour."
)


async def _kb_ids(api: RunningApi, headers: dict[str, str]) -> dict[str, str]:
    kbs = (await api.http.get("/api/v1/knowledge-bases", headers=headers)).json()["knowledge_bases"]
    return {("personal" if kb["personal"] else kb["name"]): kb["id"] for kb in kbs}


async def upload(
    api: RunningApi,
    headers: dict[str, str],
    kb_id: str,
    name: str,
    data: bytes,
    content_type: str = "text/plain",
) -> str:
    resp = await api.http.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (name, data, content_type)},
        headers=headers,
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "processing"
    return str(resp.json()["document_id"])


async def wait_settled(
    api: RunningApi, headers: dict[str, str], kb_id: str, doc_id: str, *, timeout_s: float = 120
) -> dict[str, Any]:
    for _ in range(int(timeout_s * 10)):
        doc = (
            await api.http.get(f"/api/v1/knowledge-bases/{kb_id}/documents/{doc_id}", headers=headers)
        ).json()
        if doc["status"] != "processing":
            return dict(doc)
        await asyncio.sleep(0.1)
    raise AssertionError(f"document {doc_id} stayed processing")


async def query(api: RunningApi, headers: dict[str, str], kb_id: str, text: str) -> list[dict[str, Any]]:
    resp = await api.http.post(
        f"/api/v1/knowledge-bases/{kb_id}/query", json={"query": text, "top_k": 5}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["results"])


async def test_personal_document_lifecycle_and_sharing(platform: RunningApi) -> None:
    alice = await platform.auth("kb-alice")
    bob = await platform.auth("kb-bob")
    alice_kb = (await _kb_ids(platform, alice))["personal"]
    bob_kb = (await _kb_ids(platform, bob))["personal"]
    assert alice_kb != bob_kb

    doc_id = await upload(platform, alice, alice_kb, "handbook.txt", HANDBOOK.encode())
    doc = await wait_settled(platform, alice, alice_kb, doc_id)
    assert doc["status"] == "ready", doc
    assert doc["chunk_count"] >= 1
    assert doc["owner_id"] == "user:kb-alice"

    hits = await query(platform, alice, alice_kb, "how do I reset my password?")
    assert hits and hits[0]["doc_id"] == doc_id
    assert "password" in hits[0]["text"].lower()

    # Bob sees nothing of it: not the KB, not the document, not the chunks.
    assert (
        await platform.http.get(f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}", headers=bob)
    ).status_code == 404
    assert (
        await platform.http.get(f"/api/v1/knowledge-bases/{alice_kb}/documents", headers=bob)
    ).status_code == 404
    assert (
        await platform.http.post(
            f"/api/v1/knowledge-bases/{alice_kb}/query", json={"query": "password"}, headers=bob
        )
    ).status_code == 404
    assert (
        await platform.http.delete(f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}", headers=bob)
    ).status_code == 404

    # Share with Bob: visible on his next query; unshare: gone again.
    shared = await platform.http.post(
        f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}/shares",
        json={"user_ids": ["kb-bob"]},
        headers=alice,
    )
    assert shared.status_code == 200, shared.text
    assert shared.json()["shared_with"] == ["user:kb-bob"]
    assert alice_kb in (await _kb_ids(platform, bob)).values()
    bob_hits = await query(platform, bob, alice_kb, "password reset")
    assert {h["doc_id"] for h in bob_hits} == {doc_id}
    # Bob may read but not change it.
    assert (
        await platform.http.delete(f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}", headers=bob)
    ).status_code == 403

    unshared = await platform.http.request(
        "DELETE",
        f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}/shares",
        json={"user_ids": ["kb-bob"]},
        headers=alice,
    )
    assert unshared.json()["shared_with"] == []
    assert (
        await platform.http.post(
            f"/api/v1/knowledge-bases/{alice_kb}/query", json={"query": "password"}, headers=bob
        )
    ).status_code == 404

    # Group share reaches every member of the group.
    carol = {"Authorization": f"Bearer {await platform.token('kb-carol', groups=['g-finance'])}"}
    await platform.http.post(
        f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}/shares",
        json={"group_ids": ["g-finance"]},
        headers=alice,
    )
    assert {h["doc_id"] for h in await query(platform, carol, alice_kb, "expenses")} == {doc_id}

    # Delete: gone from listings and from search.
    assert (
        await platform.http.delete(f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}", headers=alice)
    ).status_code == 204
    assert (
        await platform.http.get(f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc_id}", headers=alice)
    ).status_code == 404
    assert await query(platform, alice, alice_kb, "password") == []
    listing = (await platform.http.get(f"/api/v1/knowledge-bases/{alice_kb}/documents", headers=alice)).json()
    assert listing["documents"] == []


async def test_org_knowledge_base_is_read_by_all_and_changed_by_admins(platform: RunningApi) -> None:
    admin = {"Authorization": f"Bearer {await platform.token('kb-admin', roles=['OrgAdmin'])}"}
    user = await platform.auth("kb-user")
    refused = await platform.http.post(
        "/api/v1/admin/knowledge-bases", json={"name": "Handbook"}, headers=user
    )
    assert refused.status_code == 403
    created = await platform.http.post(
        "/api/v1/admin/knowledge-bases", json={"name": "Handbook"}, headers=admin
    )
    assert created.status_code == 201, created.text
    org_kb = created.json()["id"]

    doc_id = await upload(platform, admin, org_kb, "handbook.md", HANDBOOK.encode(), "text/markdown")
    assert (await wait_settled(platform, admin, org_kb, doc_id))["status"] == "ready"

    kbs = (await platform.http.get("/api/v1/knowledge-bases", headers=user)).json()["knowledge_bases"]
    org_view = next(kb for kb in kbs if kb["id"] == org_kb)
    assert org_view["can_upload"] is False
    assert kbs[0]["personal"] is True
    hits = await query(platform, user, org_kb, "receipts for expense claims")
    assert hits and hits[0]["doc_id"] == doc_id
    refused_upload = await platform.http.post(
        f"/api/v1/knowledge-bases/{org_kb}/documents",
        files={"file": ("x.txt", b"mine", "text/plain")},
        headers=user,
    )
    assert refused_upload.status_code == 403
    assert (
        await platform.http.delete(f"/api/v1/knowledge-bases/{org_kb}/documents/{doc_id}", headers=user)
    ).status_code == 403


def _pdf(pages: int, *, encrypt: bool = False) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if encrypt:
        writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_bad_files_fail_clearly_and_affect_nothing_else(platform: RunningApi) -> None:
    owner = await platform.auth("kb-bad")
    kb = (await _kb_ids(platform, owner))["personal"]
    good = await upload(platform, owner, kb, "good.txt", HANDBOOK.encode())
    assert (await wait_settled(platform, owner, kb, good))["status"] == "ready"

    cases = {
        "corrupt.pdf": (b"%PDF-1.7\n" + b"\x00garbage" * 50, "document_corrupt"),
        "locked.pdf": (_pdf(1, encrypt=True), "document_encrypted"),
        "empty.txt": (b"", "document_empty"),
        "photo.pdf": (b"just some plain text, not a pdf at all", "content_mismatch"),
        "huge.pdf": (_pdf(5000), "document_too_large"),
    }
    ids = {name: await upload(platform, owner, kb, name, data) for name, (data, _) in cases.items()}
    for name, doc_id in ids.items():
        doc = await wait_settled(platform, owner, kb, doc_id)
        assert doc["status"] == "failed", (name, doc)
        assert doc["error_code"] == cases[name][1], (name, doc)
        assert doc["error_message"]

    too_big = await platform.http.post(
        f"/api/v1/knowledge-bases/{kb}/documents",
        files={"file": ("big.txt", b"x" * (platform.settings.ingest_max_file_bytes + 1), "text/plain")},
        headers=owner,
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "file_too_large"

    # The good document is untouched and still answers.
    assert (await wait_settled(platform, owner, kb, good))["status"] == "ready"
    assert (await query(platform, owner, kb, "password"))[0]["doc_id"] == good


async def test_admin_retries_a_failed_ingestion_after_fixing_it(platform: RunningApi) -> None:
    owner = await platform.auth("kb-fix")
    admin = {"Authorization": f"Bearer {await platform.token('kb-fix-admin', roles=['OrgAdmin'])}"}
    kb = (await _kb_ids(platform, owner))["personal"]
    doc_id = await upload(platform, owner, kb, "notes.txt", b"")
    assert (await wait_settled(platform, owner, kb, doc_id))["error_code"] == "document_empty"

    assert (await platform.http.get("/api/v1/admin/failed-operations", headers=owner)).status_code == 403
    ops = (await platform.http.get("/api/v1/admin/failed-operations", headers=admin)).json()[
        "failed_operations"
    ]
    op = next(o for o in ops if o["resource_id"] == doc_id)
    assert op["error_code"] == "document_empty" and op["kind"] == "ingest"

    # The cause is fixed at the source (the file's bytes), then the admin retries.
    await FilesystemBlobStore(platform.settings.resolved_blob_path).put(
        f"documents/{doc_id}", HANDBOOK.encode()
    )
    retried = await platform.http.post(f"/api/v1/admin/failed-operations/{op['id']}/retry", headers=admin)
    assert retried.status_code == 202, retried.text
    doc = await wait_settled(platform, owner, kb, doc_id)
    assert doc["status"] == "ready" and doc["error_code"] is None
    ops = (await platform.http.get("/api/v1/admin/failed-operations", headers=admin)).json()[
        "failed_operations"
    ]
    assert all(o["resource_id"] != doc_id for o in ops)


async def test_batch_ingestion_reports_progress(platform: RunningApi) -> None:
    owner = await platform.auth("kb-batch")
    kb = (await _kb_ids(platform, owner))["personal"]
    files = [
        ("files", (f"doc{n}.txt", f"Document number {n}. {HANDBOOK}".encode(), "text/plain"))
        for n in range(4)
    ]
    files.append(("files", ("broken.pdf", b"not a pdf", "application/pdf")))
    resp = await platform.http.post(f"/api/v1/knowledge-bases/{kb}/ingestions", files=files, headers=owner)
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    assert len(batch["document_ids"]) == 5
    for _ in range(600):
        progress = (await platform.http.get(f"/api/v1/ingestions/{batch['batch_id']}", headers=owner)).json()
        if progress["done"]:
            break
        await asyncio.sleep(0.1)
    assert progress["done"] and progress["total"] == 5
    assert progress["ready"] == 4 and progress["failed"] == 1
    assert progress["failed_document_ids"] == [batch["document_ids"][-1]]
    other = await platform.auth("kb-batch-other")
    assert (
        await platform.http.get(f"/api/v1/ingestions/{batch['batch_id']}", headers=other)
    ).status_code == 404


async def test_a_refused_batch_stores_nothing(platform: RunningApi) -> None:
    owner = await platform.auth("kb-batch-refused")
    kb = (await _kb_ids(platform, owner))["personal"]
    limit = platform.settings.ingest_max_file_bytes
    files = [
        ("files", ("fine.txt", HANDBOOK.encode(), "text/plain")),
        ("files", ("huge.txt", b"x" * (limit + 1), "text/plain")),
    ]
    resp = await platform.http.post(f"/api/v1/knowledge-bases/{kb}/ingestions", files=files, headers=owner)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "file_too_large"
    listing = (await platform.http.get(f"/api/v1/knowledge-bases/{kb}/documents", headers=owner)).json()
    assert listing["documents"] == []
