"""One document per file in a knowledge base (issue 10).

The same bytes uploaded again answer the existing document (no second document, no
second blob, nothing ingested); a file under a name already there is the document's
next version: same id and shares, and once it is ready only its text answers.
Real platform and the bundled embedding model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningApi
from tests.knowledge.test_documents_api import _kb_ids, query, wait_settled

pytestmark = pytest.mark.slow

OLD = (
    "Parking policy\n\nStaff park in the north garage on level two. "
    "Visitors receive a day pass from the front desk."
)
NEW = (
    "Parking policy\n\nFrom March the garage closes; staff cycle or take the tram, "
    "and the company pays for a yearly tram ticket."
)


async def _post(
    api: RunningApi, headers: dict[str, str], kb_id: str, name: str, data: bytes
) -> dict[str, Any]:
    resp = await api.http.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (name, data, "text/plain")},
        headers=headers,
    )
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


async def _documents(api: RunningApi, headers: dict[str, str], kb_id: str) -> list[dict[str, Any]]:
    resp = await api.http.get(f"/api/v1/knowledge-bases/{kb_id}/documents", headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["documents"])


def _blobs(platform: RunningApi) -> list[Path]:
    return [p for p in platform.settings.resolved_blob_path.rglob("*") if p.is_file()]


async def test_the_same_bytes_twice_answer_the_existing_document(platform: RunningApi) -> None:
    alice = await platform.auth("dup-alice")
    kb = (await _kb_ids(platform, alice))["personal"]
    first = await _post(platform, alice, kb, "parking.txt", OLD.encode())
    assert first["status"] == "processing" and first["duplicate"] is False and first["version"] == 1
    assert (await wait_settled(platform, alice, kb, first["document_id"]))["status"] == "ready"
    blobs = _blobs(platform)

    for name in ("parking.txt", "parking-copy.txt"):  # same bytes, under its name or another
        again = await _post(platform, alice, kb, name, OLD.encode())
        assert again == {
            "document_id": first["document_id"],
            "status": "ready",
            "version": 1,
            "duplicate": True,
        }

    assert [d["id"] for d in await _documents(platform, alice, kb)] == [first["document_id"]]
    assert _blobs(platform) == blobs  # the second copy's bytes were not kept


async def test_concurrent_identical_uploads_make_one_document(platform: RunningApi) -> None:
    bob = await platform.auth("dup-bob")
    kb = (await _kb_ids(platform, bob))["personal"]
    answers = await asyncio.gather(*(_post(platform, bob, kb, "parking.txt", OLD.encode()) for _ in range(4)))
    assert len({a["document_id"] for a in answers}) == 1, answers
    assert sum(not a["duplicate"] for a in answers) == 1, answers
    docs = await _documents(platform, bob, kb)
    assert [d["id"] for d in docs] == [answers[0]["document_id"]]
    assert (await wait_settled(platform, bob, kb, docs[0]["id"]))["status"] == "ready"
    assert len(_blobs(platform)) == 1


async def test_a_new_file_under_the_same_name_is_the_next_version(platform: RunningApi) -> None:
    carol = await platform.auth("ver-carol")
    dave = await platform.auth("ver-dave")
    kb = (await _kb_ids(platform, carol))["personal"]
    first = await _post(platform, carol, kb, "parking.txt", OLD.encode())
    doc_id = first["document_id"]
    assert (await wait_settled(platform, carol, kb, doc_id))["status"] == "ready"
    shared = await platform.http.post(
        f"/api/v1/knowledge-bases/{kb}/documents/{doc_id}/shares",
        json={"user_ids": ["ver-dave"]},
        headers=carol,
    )
    assert shared.status_code == 200, shared.text

    second = await _post(platform, carol, kb, "parking.txt", NEW.encode())
    assert second == {"document_id": doc_id, "status": "processing", "version": 2, "duplicate": False}
    doc = await wait_settled(platform, carol, kb, doc_id)
    assert doc["status"] == "ready" and doc["version"] == 2, doc
    assert doc["shared_with"] == ["user:ver-dave"]  # the shares stay with the document
    assert [d["id"] for d in await _documents(platform, carol, kb)] == [doc_id]
    assert len(_blobs(platform)) == 1  # the old version's bytes are gone

    for headers in (carol, dave):
        hits = await query(platform, headers, kb, "where do staff park their cars?")
        assert hits and all(h["doc_id"] == doc_id for h in hits)
        texts = " ".join(h["text"] for h in hits)
        assert "tram" in texts and "north garage" not in texts, texts


async def test_a_batch_makes_one_document_per_file(platform: RunningApi) -> None:
    erin = await platform.auth("ver-erin")
    kb = (await _kb_ids(platform, erin))["personal"]
    existing = await _post(platform, erin, kb, "parking.txt", OLD.encode())
    resp = await platform.http.post(
        f"/api/v1/knowledge-bases/{kb}/ingestions",
        files=[
            ("files", ("again.txt", OLD.encode(), "text/plain")),  # bytes already there
            ("files", ("tram.txt", NEW.encode(), "text/plain")),
            ("files", ("tram-copy.txt", NEW.encode(), "text/plain")),  # the same bytes twice in one batch
        ],
        headers=erin,
    )
    assert resp.status_code == 202, resp.text
    ids = resp.json()["document_ids"]
    assert ids[0] == existing["document_id"] and ids[1] == ids[2] != ids[0], ids
    for doc_id in set(ids):
        assert (await wait_settled(platform, erin, kb, doc_id))["status"] == "ready"
    assert sorted(d["id"] for d in await _documents(platform, erin, kb)) == sorted(set(ids))
    progress = (await platform.http.get(f"/api/v1/ingestions/{resp.json()['batch_id']}", headers=erin)).json()
    for _ in range(300):
        if progress["done"]:
            break
        await asyncio.sleep(0.1)
        progress = (
            await platform.http.get(f"/api/v1/ingestions/{resp.json()['batch_id']}", headers=erin)
        ).json()
    assert progress["total"] == 1 and progress["ready"] == 1, progress
