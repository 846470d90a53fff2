"""Who a Slack user is in Keel, and who will see an answer in a channel.

A Slack user acts as the Keel user with the same verified email: ``users.info``
(cached in Redis) gives the email, the user directory (``infra.identity_directory``)
the Keel user. Bots, guests (``is_restricted`` / ``is_ultra_restricted``) and
deactivated accounts are refused; an email Keel does not know is refused too (the
person is told to sign in once), never provisioned. A channel's audience is its
human members (``conversations.members``, cached); docs/slack.md says how it is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis.asyncio as aioredis
from slack_sdk.web.async_client import AsyncWebClient

from core.models.chat import Audience, AudienceMember
from core.models.slack import SlackPrincipal, VisibilityRule
from infra.slack_web import SlackCallFailed, slack_call

Refusal = Literal["unknown_user", "guest", "disabled", "bot", "no_email"]
_MAX_MEMBERS = 1000
#: Group ids an audience may carry in all (it travels in workflow payloads, ~2 MB at most).
_MAX_AUDIENCE_GROUPS = 10_000


class EmailResolver(Protocol):
    async def resolve_email(self, email: str) -> Any: ...


@dataclass(frozen=True)
class SlackProfile:
    slack_user_id: str
    email: str | None
    name: str
    is_bot: bool
    deleted: bool
    guest: bool


@dataclass(frozen=True)
class Resolved:
    principal: SlackPrincipal | None
    refusal: Refusal | None = None


class SlackPeople:
    def __init__(
        self, *, slack: AsyncWebClient, redis: aioredis.Redis, resolver: EmailResolver, cache_s: int
    ) -> None:
        self._slack = slack
        self._redis = redis
        self._resolver = resolver
        self._cache_s = cache_s

    async def profile(self, team_id: str, slack_user_id: str) -> SlackProfile | None:
        key = f"keel:slack:user:{team_id}:{slack_user_id}"
        cached = await self._redis.get(key)
        if cached is not None:
            data = json.loads(cached)
        else:
            try:
                reply = await slack_call(self._slack, "users.info", user=slack_user_id)
            except SlackCallFailed as err:
                if err.error == "user_not_found":
                    return None
                raise
            user = reply.get("user") or {}
            profile = user.get("profile") or {}
            data = {
                "email": profile.get("email"),
                "name": user.get("real_name")
                or profile.get("real_name")
                or user.get("name")
                or slack_user_id,
                # Not ``is_app_user``: that is a person who authorized this app, not a bot.
                "is_bot": bool(user.get("is_bot")) or slack_user_id == "USLACKBOT",
                "deleted": bool(user.get("deleted")),
                "guest": bool(user.get("is_restricted") or user.get("is_ultra_restricted")),
            }
            if self._cache_s:
                await self._redis.set(key, json.dumps(data), ex=self._cache_s)
        return SlackProfile(slack_user_id=slack_user_id, **data)

    async def resolve(self, team_id: str, slack_user_id: str) -> Resolved:
        """The Keel user a Slack user acts as, or why there is none."""
        profile = await self.profile(team_id, slack_user_id)
        if profile is None:
            return Resolved(None, "unknown_user")
        if profile.is_bot:
            return Resolved(None, "bot")
        if profile.deleted:
            return Resolved(None, "disabled")
        if profile.guest:
            return Resolved(None, "guest")
        if not profile.email:
            return Resolved(None, "no_email")
        found = await self._resolver.resolve_email(profile.email)
        if found.status != "found" or found.user is None:
            status = str(found.status)
            return Resolved(None, status if status in ("guest", "disabled") else "unknown_user")  # type: ignore[arg-type]
        user = found.user
        return Resolved(
            SlackPrincipal(
                user_id=user.user_id,
                email=user.email,
                display_name=user.display_name or profile.name,
                groups=list(user.groups),
                roles=list(user.roles),
            )
        )

    async def members(self, team_id: str, channel_id: str) -> list[str]:
        """Who is in the conversation now. Never cached: a person who joined a moment ago
        reads the next answer, so the audience must include them."""
        members: list[str] = []
        cursor = ""
        while len(members) < _MAX_MEMBERS:
            params: dict[str, Any] = {"channel": channel_id, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            reply = await slack_call(self._slack, "conversations.members", **params)
            members.extend(str(m) for m in reply.get("members") or [])
            cursor = str((reply.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
        return members

    async def channel(self, team_id: str, channel_id: str) -> dict[str, Any]:
        """``conversations.info``'s channel (cached like profiles): its kind and sharing."""
        key = f"keel:slack:channel:{team_id}:{channel_id}"
        cached = await self._redis.get(key)
        if cached is not None:
            info: dict[str, Any] = json.loads(cached)
            return info
        reply = await slack_call(self._slack, "conversations.info", channel=channel_id)
        channel = reply.get("channel") or {}
        info = {
            k: bool(channel.get(k)) for k in ("is_im", "is_mpim", "is_private", "is_ext_shared", "is_shared")
        }
        if self._cache_s:
            await self._redis.set(key, json.dumps(info), ex=self._cache_s)
        return info

    async def audience(
        self, team_id: str, channel_id: str, asker: SlackPrincipal, *, public_rule: str = "org"
    ) -> tuple[Audience, bool, VisibilityRule]:
        """(the channel's human members as Keel users, whether documents may be searched
        at all, the rule that applied). Bots do not count; members Keel cannot resolve count as readers of org
        documents only; a guest, a channel shared with another organisation (Slack
        Connect) or a channel too big to list means no documents. A public channel, which
        anyone in the workspace can read, gets org documents only unless ``public_rule``
        is ``members`` (docs/slack.md)."""
        resolved: dict[str, AudienceMember] = {
            asker.user_id: AudienceMember(user_id=asker.user_id, groups=asker.groups)
        }
        info = await self.channel(team_id, channel_id)
        if info["is_ext_shared"] or info["is_shared"]:
            return Audience(members=list(resolved.values()), unresolved_members=1), False, "external"
        public = not (info["is_private"] or info["is_im"] or info["is_mpim"])
        rule: VisibilityRule = "public" if public and public_rule == "org" else "channel"
        unresolved = 1 if rule == "public" else 0
        slack_ids = await self.members(team_id, channel_id)
        if len(slack_ids) >= _MAX_MEMBERS:
            return (
                Audience(members=list(resolved.values()), unresolved_members=len(slack_ids)),
                False,
                "large",
            )
        for slack_id in slack_ids:
            person = await self.resolve(team_id, slack_id)
            if person.principal is not None:
                p = person.principal
                resolved.setdefault(p.user_id, AudienceMember(user_id=p.user_id, groups=p.groups))
            elif person.refusal == "bot":
                continue
            elif person.refusal == "guest":
                return (
                    Audience(members=list(resolved.values()), unresolved_members=unresolved + 1),
                    False,
                    "guest",
                )
            else:
                unresolved += 1
        members = list(resolved.values())
        if sum(len(m.groups) for m in members) > _MAX_AUDIENCE_GROUPS:
            # Too many group memberships to carry: read as if someone were unresolved (org only).
            members = [AudienceMember(user_id=m.user_id) for m in members]
            unresolved = max(unresolved, 1)
        return Audience(members=members, unresolved_members=unresolved), True, rule


class GroupMembers(Protocol):
    async def in_group(self, group_id: str, limit: int = 50) -> list[Any]: ...


class DirectoryApprovers:
    """Where an approval request goes in Slack: a DM to each member of the approver group
    Keel knows (user directory → email → ``users.lookupByEmail`` → ``conversations.open``)."""

    def __init__(self, *, slack: AsyncWebClient, directory: GroupMembers, limit: int = 20) -> None:
        self._slack = slack
        self._directory = directory
        self._limit = limit

    async def dm_channels(self, group_id: str, *, except_slack_user: str) -> list[str]:
        channels: list[str] = []
        for person in await self._directory.in_group(group_id, limit=self._limit):
            if not person.email:
                continue
            try:
                found = await slack_call(self._slack, "users.lookupByEmail", email=person.email)
                slack_id = str((found.get("user") or {}).get("id") or "")
                if not slack_id or slack_id == except_slack_user:
                    continue
                opened = await slack_call(self._slack, "conversations.open", users=slack_id)
            except SlackCallFailed as err:
                if err.error in ("users_not_found", "user_not_found", "user_disabled"):
                    continue
                raise
            channels.append(str((opened.get("channel") or {}).get("id") or ""))
        return [c for c in channels if c]
