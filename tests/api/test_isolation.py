"""User B must never read, stream, list, continue or delete user A's session."""

from __future__ import annotations

from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI


async def test_another_users_session_answers_404_everywhere(platform: RunningApi, llm: FakeOpenAI) -> None:
    alice = await platform.auth("alice-iso")
    mallory = await platform.auth("mallory")
    a = (
        await platform.http.post("/api/v1/chat", json={"message": "alice's secret plan"}, headers=alice)
    ).json()
    sid, tid = a["session_id"], a["turn_id"]

    attempts = [
        await platform.http.get(f"/api/v1/sessions/{sid}", headers=mallory),
        await platform.http.get(f"/api/v1/sessions/{sid}/turns/{tid}/events", headers=mallory),
        await platform.http.delete(f"/api/v1/sessions/{sid}", headers=mallory),
        await platform.http.post("/api/v1/chat", json={"message": "hi", "session_id": sid}, headers=mallory),
        await platform.http.post(
            "/api/v1/chat/stream", json={"message": "hi", "session_id": sid}, headers=mallory
        ),
    ]
    for resp in attempts:
        assert resp.status_code == 404, (resp.request.method, resp.request.url, resp.text)
        assert resp.json()["error"]["code"] == "session_not_found"
        assert "secret" not in resp.text

    # An id that never existed answers exactly the same: no existence leak.
    unknown = await platform.http.get("/api/v1/sessions/0123456789abcdef0123456789abcdef", headers=mallory)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "session_not_found"

    listing = (await platform.http.get("/api/v1/sessions", headers=mallory)).json()
    assert listing["sessions"] == []

    # Alice's session is untouched: nothing was added, nothing deleted.
    detail = (await platform.http.get(f"/api/v1/sessions/{sid}", headers=alice)).json()
    assert [m["content"] for m in detail["messages"]] == ["alice's secret plan", "Echo: alice's secret plan"]
    assert llm.request_count == 1


async def test_turn_of_own_session_but_foreign_turn_id_is_404(platform: RunningApi, llm: FakeOpenAI) -> None:
    alice = await platform.auth("alice-iso2")
    bob = await platform.auth("bob-iso2")
    a = (await platform.http.post("/api/v1/chat", json={"message": "a"}, headers=alice)).json()
    b = (await platform.http.post("/api/v1/chat", json={"message": "b"}, headers=bob)).json()
    # Bob asks for Alice's turn through his own session.
    resp = await platform.http.get(
        f"/api/v1/sessions/{b['session_id']}/turns/{a['turn_id']}/events", headers=bob
    )
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "turn_not_found"
