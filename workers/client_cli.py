"""The ``keel`` client commands, built on keel_sdk (docs/sdk.md "The CLI").

``keel chat | sessions | tools | approvals | keys | usage | admin …`` and
``keel kb list | query`` talk to a Keel API as a user: the URL and credential come from
``--url``, then ``KEEL_URL`` / ``KEEL_API_KEY`` / ``KEEL_TOKEN``, then the config file
(``$KEEL_CONFIG``, else ``~/.config/keel/config.toml``: ``url = "…"``, ``api_key = "keel_…"``).
Every command takes ``--json``. Exit status: 0 done, 1 a turn that failed, 2 an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from keel_sdk import (
    ApprovalRequired,
    ChatResponse,
    Error,
    KeelClient,
    KeelError,
    MessageDelta,
    MessageReset,
    TurnCompleted,
)
from pydantic import BaseModel

if TYPE_CHECKING:
    from typing import TypeAlias

    Parsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
CLIENT_COMMANDS = ("chat", "sessions", "tools", "approvals", "keys", "usage", "admin")


# ------------------------------------------------------------------ configuration
def config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("KEEL_CONFIG") or Path.home() / ".config" / "keel" / "config.toml")


def load_login(url: str | None, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(url, credential)``: the flag, then the environment, then the config file."""
    path = config_path(env)
    file: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as handle:
            file = tomllib.load(handle)
    credential = env.get("KEEL_API_KEY") or env.get("KEEL_TOKEN") or file.get("api_key") or file.get("token")
    return url or env.get("KEEL_URL") or file.get("url"), credential


# ------------------------------------------------------------------ arguments
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="API base URL (default: $KEEL_URL, the config file, http://127.0.0.1:8000)"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    return common


def _group(sub: Parsers, name: str, help_text: str, dest: str) -> Parsers:
    parser = sub.add_parser(name, help=help_text, parents=[_common()])
    return parser.add_subparsers(dest=dest, required=True)


def add_client_parsers(sub: Parsers) -> None:
    """Add the client commands to the ``keel`` parser."""
    common = _common()
    chat = sub.add_parser("chat", parents=[common], help="chat with your agent (interactive without MESSAGE)")
    chat.add_argument("message", nargs="?", help="send one message, stream the answer and exit")
    chat.add_argument("--session", help="continue this session")

    sessions = _group(sub, "sessions", "your chat sessions", "sessions_command")
    sessions.add_parser("list", parents=[common]).add_argument("--limit", type=int)
    sessions.add_parser("show", parents=[common]).add_argument("session_id")
    sessions.add_parser("delete", parents=[common]).add_argument("session_id")

    sub.add_parser("tools", parents=[common], help="the tools your agent may use")
    sub.add_parser("usage", parents=[common], help="your tokens, cost and budgets")

    approvals = _group(sub, "approvals", "tool calls waiting for your decision", "approvals_command")
    approvals.add_parser("list", parents=[common])
    approvals.add_parser("approve", parents=[common]).add_argument("approval_id")
    deny = approvals.add_parser("deny", parents=[common])
    deny.add_argument("approval_id")
    deny.add_argument("--reason")

    keys = _group(sub, "keys", "your API keys", "keys_command")
    create = keys.add_parser("create", parents=[common])
    create.add_argument("name")
    create.add_argument("--scope", action="append", required=True, help="a permission (repeat)")
    create.add_argument("--expires-at", help="ISO 8601 with a time zone")
    keys.add_parser("list", parents=[common])
    keys.add_parser("rotate", parents=[common]).add_argument("key_id")
    keys.add_parser("revoke", parents=[common]).add_argument("key_id")

    admin = _group(sub, "admin", "administration (OrgAdmin)", "admin_command")
    tools = admin.add_parser("tools", parents=[common]).add_subparsers(dest="admin_sub", required=True)
    tools.add_parser("list", parents=[common])
    update = tools.add_parser("update", parents=[common])
    update.add_argument("server_id")
    update.add_argument("--enabled", choices=["true", "false"])
    update.add_argument("--requires-approval", choices=["true", "false"])
    ops = admin.add_parser("failed-ops", parents=[common]).add_subparsers(dest="admin_sub", required=True)
    ops.add_parser("list", parents=[common]).add_argument("--status", choices=["open", "retried", "resolved"])
    ops.add_parser("retry", parents=[common]).add_argument("op_id")
    budgets = admin.add_parser("budgets", parents=[common]).add_subparsers(dest="admin_sub", required=True)
    budgets.add_parser("get", parents=[common]).add_argument("user_id")
    put = budgets.add_parser("set", parents=[common])
    put.add_argument("user_id")
    put.add_argument("--daily", type=int, help="daily tokens (omit: unlimited)")
    put.add_argument("--monthly", type=int, help="monthly tokens (omit: unlimited)")
    budgets.add_parser("clear", parents=[common]).add_argument("user_id")
    audit = admin.add_parser("audit", parents=[common]).add_subparsers(dest="admin_sub", required=True)
    audit.add_parser("verify", parents=[common])
    audit.add_parser("list", parents=[common]).add_argument("--limit", type=int, default=20)


def add_kb_client_parsers(kb_sub: Parsers) -> None:
    """``keel kb list`` and ``keel kb query`` (``keel kb upload`` is workers/kb_cli.py)."""
    kb_sub.add_parser("list", parents=[_common()], help="knowledge bases you may read")
    query = kb_sub.add_parser("query", parents=[_common()], help="search a knowledge base")
    query.add_argument("text")
    query.add_argument("--kb", metavar="KB_ID", help="knowledge base id (default: your personal one)")
    query.add_argument("--top-k", type=int, default=5)


# ------------------------------------------------------------------ output
class Out:
    def __init__(self, as_json: bool, stream: TextIO) -> None:
        self.as_json = as_json
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def result(self, value: BaseModel | None, text: Callable[[], str]) -> None:
        if self.as_json:
            self.write(json.dumps(value.model_dump(mode="json") if value else None, indent=2) + "\n")
        else:
            self.write(text())


def _rows(rows: list[tuple[Any, ...]], empty: str) -> str:
    if not rows:
        return empty + "\n"
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


# ------------------------------------------------------------------ commands
def _print_turn(out: Out, keel: KeelClient, message: str, session: str | None) -> tuple[str | None, int]:
    """Stream one turn to ``out`` (or print its JSON); ``(session id, exit status)``."""
    stream = keel.chat_stream(message, session_id=session)
    final: ChatResponse | None = None
    for event in stream:
        if isinstance(event, MessageDelta) and not out.as_json:
            out.write(event.text)
        elif isinstance(event, MessageReset) and not out.as_json:
            out.write("\n[the model is retrying]\n")
        elif isinstance(event, ApprovalRequired):
            if out.as_json:
                out.write(json.dumps(event.model_dump(mode="json", exclude={"event_id"})) + "\n")
            else:
                out.write(
                    f"\n[approval required: {event.tool} {json.dumps(event.arguments)} id={event.id}]\n"
                )
        elif isinstance(event, Error):
            sys.stderr.write(f"keel chat: {event.code}: {event.message}\n")
            return stream.session_id, EXIT_FAILED
        elif isinstance(event, TurnCompleted):
            final = event.response
    if final is not None:
        out.result(final, lambda: "\n")
        return stream.session_id, EXIT_FAILED if final.status == "failed" else EXIT_OK
    return stream.session_id, EXIT_OK


def _chat(keel: KeelClient, args: argparse.Namespace, out: Out) -> int:
    if args.message:
        return _print_turn(out, keel, args.message, args.session)[1]
    session = args.session
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            out.write("\n")
            return EXIT_OK
        if line in ("exit", "quit", "/exit"):
            return EXIT_OK
        if line:
            out.write("keel> ")
            session, _ = _print_turn(out, keel, line, session)


def _sessions(keel: KeelClient, args: argparse.Namespace, out: Out) -> int:
    if args.sessions_command == "list":
        page = keel.sessions.list(limit=args.limit)
        rows = [
            (s.id, s.updated_at.isoformat(timespec="seconds"), s.turn_count, s.title) for s in page.sessions
        ]
        out.result(page, lambda: _rows(rows, "no sessions"))
    elif args.sessions_command == "show":
        detail = keel.sessions.get(args.session_id)
        out.result(detail, lambda: "".join(f"{m.role}> {m.content}\n" for m in detail.messages))
    else:
        keel.sessions.delete(args.session_id)
        out.result(None, lambda: f"deleted {args.session_id}\n")
    return EXIT_OK


def _approvals(keel: KeelClient, args: argparse.Namespace, out: Out) -> int:
    if args.approvals_command == "list":
        found = keel.approvals.list()
        rows = [(a.id, a.tool, json.dumps(a.arguments), a.status) for a in found.approvals]
        out.result(found, lambda: _rows(rows, "no pending approvals"))
        return EXIT_OK
    if args.approvals_command == "approve":
        decided = keel.approvals.approve(args.approval_id)
    else:
        decided = keel.approvals.deny(args.approval_id, args.reason)
    out.result(decided, lambda: f"{decided.id}: {decided.status}\n")
    return EXIT_OK


def _keys(keel: KeelClient, args: argparse.Namespace, out: Out) -> int:
    if args.keys_command == "list":
        found = keel.api_keys.list()
        rows = [
            (k.id, k.name, k.prefix, ",".join(k.scopes), k.status, k.expires_at.date())
            for k in found.api_keys
        ]
        out.result(found, lambda: _rows(rows, "no API keys"))
    elif args.keys_command == "revoke":
        keel.api_keys.revoke(args.key_id)
        out.result(None, lambda: f"revoked {args.key_id}\n")
    else:
        made = (
            keel.api_keys.create(args.name, args.scope, expires_at=args.expires_at)
            if args.keys_command == "create"
            else keel.api_keys.rotate(args.key_id)
        )
        out.result(made, lambda: f"{made.id}  {made.key}\n(the key is shown only now)\n")
    return EXIT_OK


def _kb(keel: KeelClient, args: argparse.Namespace, out: Out) -> int:
    if args.kb_command == "list":
        found = keel.kb.list()
        rows = [(k.id, k.name, "personal" if k.personal else k.owner_type) for k in found.knowledge_bases]
        out.result(found, lambda: _rows(rows, "no knowledge bases"))
        return EXIT_OK
    hits = keel.kb.query(args.kb or keel.kb.personal_id(), args.text, args.top_k)
    out.result(hits, lambda: "".join(f"{h.score:.3f}  {h.title}: {h.text[:200]}\n" for h in hits.results))
    return EXIT_OK


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "true"


def _admin(keel: KeelClient, args: argparse.Namespace, out: Out) -> int:
    group, action = args.admin_command, args.admin_sub
    if group == "tools" and action == "list":
        servers = keel.admin.tools.list()
        rows: list[tuple[Any, ...]] = [
            (s.id, s.name, s.transport, s.status, s.enabled) for s in servers.tool_servers
        ]
        out.result(servers, lambda: _rows(rows, "no tool servers"))
    elif group == "tools":
        fields = {"enabled": _flag(args.enabled), "requires_approval": _flag(args.requires_approval)}
        view = keel.admin.tools.update(args.server_id, **{k: v for k, v in fields.items() if v is not None})
        out.result(view, lambda: f"{view.id}: {view.status}, enabled={view.enabled}\n")
    elif group == "failed-ops" and action == "list":
        ops = keel.admin.failed_operations.list(args.status)
        out.result(
            ops,
            lambda: _rows(
                [(o.id, o.kind, o.resource_id, o.error_code, o.status) for o in ops.failed_operations],
                "no failed operations",
            ),
        )
    elif group == "failed-ops":
        op = keel.admin.failed_operations.retry(args.op_id)
        out.result(op, lambda: f"{op.id}: {op.status}\n")
    elif group == "budgets" and action == "clear":
        keel.admin.budgets.clear(args.user_id)
        out.result(None, lambda: f"cleared {args.user_id}\n")
    elif group == "budgets":
        budget = (
            keel.admin.budgets.get(args.user_id)
            if action == "get"
            else keel.admin.budgets.set(args.user_id, daily_tokens=args.daily, monthly_tokens=args.monthly)
        )
        out.result(
            budget, lambda: f"{budget.user_id}: daily {budget.daily_tokens} monthly {budget.monthly_tokens}\n"
        )
    elif action == "verify":
        chain = keel.admin.audit.verify()
        out.result(
            chain, lambda: f"{'ok' if chain.ok else 'BROKEN'}: {chain.rows} rows, last seq {chain.last_seq}\n"
        )
        return EXIT_OK if chain.ok else EXIT_FAILED
    else:
        events = keel.admin.audit.list(limit=args.limit)
        rows = [
            (e.seq, e.occurred_at.isoformat(timespec="seconds"), e.event, e.user_id) for e in events.events
        ]
        out.result(events, lambda: _rows(rows, "no audit events"))
    return EXIT_OK


_RUN: dict[str, Callable[[KeelClient, argparse.Namespace, Out], int]] = {
    "chat": _chat,
    "sessions": _sessions,
    "approvals": _approvals,
    "keys": _keys,
    "kb": _kb,
    "admin": _admin,
    "tools": lambda keel, args, out: _show(
        out, keel.tools.list(), lambda v: [(t.name, t.requires_approval) for t in v.tools]
    ),
    "usage": lambda keel, args, out: _show(out, keel.usage.get(), None),
}


def _show(out: Out, value: Any, rows: Callable[[Any], list[tuple[Any, ...]]] | None) -> int:
    text = (
        (lambda: _rows(rows(value), "none"))
        if rows
        else (lambda: json.dumps(value.model_dump(mode="json"), indent=2) + "\n")
    )
    out.result(value, text)
    return EXIT_OK


def run_client(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run one client command; returns the exit status."""
    env = os.environ if env is None else env
    url, credential = load_login(args.url, env)
    command = f"keel {args.command}"
    if not credential:
        sys.stderr.write(
            f"{command}: no credential: set KEEL_API_KEY (or KEEL_TOKEN), or api_key in {config_path(env)}\n"
        )
        return EXIT_ERROR
    try:
        with KeelClient(base_url=url, api_key=credential) as keel:
            return _RUN[args.command](keel, args, Out(args.json, sys.stdout))
    except KeelError as exc:
        sys.stderr.write(f"{command}: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write(f"{command}: interrupted\n")
        return 130
