"""PATCH /api/v1/sessions/{id}: I rename my session; a blank or oversized title is a 422
with a code; someone else's session is a 404 (tests/identity/test_route_matrix.py tries)."""

from __future__ import annotations

from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI


async def test_i_rename_my_session_and_the_list_shows_it(platform: RunningApi, llm: FakeOpenAI) -> None:
    headers = await platform.auth("renamer")
    turn = await platform.http.post("/api/v1/chat", json={"message": "first question"}, headers=headers)
    assert turn.status_code == 200, turn.text
    sid = turn.json()["session_id"]

    resp = await platform.http.patch(
        f"/api/v1/sessions/{sid}", json={"title": "  Travel   plans "}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["title"] == "Travel plans" and resp.json()["id"] == sid
    listed = (await platform.http.get("/api/v1/sessions", headers=headers)).json()["sessions"]
    assert [s["title"] for s in listed if s["id"] == sid] == ["Travel plans"]

    for bad in ({"title": "   "}, {"title": "x" * 201}, {}, {"title": "ok", "extra": 1}):
        refused = await platform.http.patch(f"/api/v1/sessions/{sid}", json=bad, headers=headers)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "invalid_request" and refused.json()["error"]["request_id"]
    after = (await platform.http.get(f"/api/v1/sessions/{sid}", headers=headers)).json()
    assert after["title"] == "Travel plans", "a refused rename changes nothing"
