"""After a share, the reader lists another person's personal knowledge base under its
owner's name, not as a second "Personal" (issue 10)."""

from __future__ import annotations

import pytest

from tests.conftest import RunningApi
from tests.knowledge.test_documents_api import upload, wait_settled

pytestmark = pytest.mark.slow


async def _headers(api: RunningApi, user_id: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await api.token(user_id, **claims)}"}


async def _personal_id(api: RunningApi, headers: dict[str, str]) -> str:
    kbs = (await api.http.get("/api/v1/knowledge-bases", headers=headers)).json()["knowledge_bases"]
    return str(next(kb["id"] for kb in kbs if kb["personal"]))


async def test_a_shared_personal_knowledge_base_is_named_after_its_owner(platform: RunningApi) -> None:
    owners = {
        "names-alice": {"display_name": "Alice Smith", "email": "alice@example.com"},
        "names-olga": {"email": "olga@example.com"},
        "names-uma": {},
    }
    reader = await _headers(platform, "names-bob", display_name="Bob Jones")
    for user_id, claims in owners.items():
        owner = await _headers(platform, user_id, **claims)
        kb = await _personal_id(platform, owner)
        doc_id = await upload(platform, owner, kb, "notes.txt", f"Notes of {user_id}.".encode())
        assert (await wait_settled(platform, owner, kb, doc_id))["status"] == "ready"
        shared = await platform.http.post(
            f"/api/v1/knowledge-bases/{kb}/documents/{doc_id}/shares",
            json={"user_ids": ["names-bob"]},
            headers=owner,
        )
        assert shared.status_code == 200, shared.text

    kbs = (await platform.http.get("/api/v1/knowledge-bases", headers=reader)).json()["knowledge_bases"]
    personal = [(kb["name"], kb["personal"]) for kb in kbs if kb["owner_type"] == "user"]
    assert personal[0] == ("Personal", True)
    assert sorted(personal[1:]) == [
        ("Alice Smith's personal", False),
        ("Personal (names-uma)", False),
        ("Personal (olga@example.com)", False),
    ]
    # The owner's own list still calls it "Personal".
    alice = await _headers(platform, "names-alice", display_name="Alice Smith")
    mine = (await platform.http.get("/api/v1/knowledge-bases", headers=alice)).json()["knowledge_bases"]
    assert [(kb["name"], kb["personal"]) for kb in mine if kb["owner_type"] == "user"] == [("Personal", True)]
