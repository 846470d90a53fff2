"""Who may read a knowledge-base chunk: the ONE place the read rule is written
(docs/knowledge.md, Access control).

A principal may read a chunk when any of these holds:

1. ``owner_type = org``;
2. ``owner_type = user`` and ``owner_id`` is the principal's ``user:<id>``;
3. ``shared_with`` contains the principal's ``user:<id>`` or one of its ``group:<id>``.

An answer that several people will see (a Slack channel) is grounded on chunks
that *every* one of them may read: :func:`acl_filter_for_audience` adds each
member as an :class:`AclReader` the chunk must also be readable by (a member
Keel could not resolve reads org chunks only), docs/knowledge.md "Audience rule".

``owner_type = department`` is phase 2: such a chunk is readable only through
rule 3 (an explicit share) until departments exist on :class:`Principal`.
``visibility`` is descriptive and plays no part in the rule: ``shared_with`` is
authoritative, so unsharing must empty it (``VectorIndex.set_document_acl``).

:func:`acl_filter` turns a principal into an :class:`AclFilter`, a neutral
description that every vector adapter translates into its engine's filter
(``infra.vector``) and ``infra.db`` into SQL; :func:`can_read` applies the very
same description in Python. No query path builds its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from core.models.chat import Audience
from core.models.knowledge import check_owner, check_shared_with
from core.models.principal import Principal, user_principal

USER_PREFIX = "user:"
GROUP_PREFIX = "group:"


class ChunkAcl(BaseModel):
    """The access-relevant part of a chunk or document (a subset of ``ChunkPayload``)."""

    owner_type: Literal["org", "department", "user"]
    owner_id: str
    shared_with: list[str] = []
    kb_id: str

    @field_validator("shared_with")
    @classmethod
    def _shared_with(cls, value: list[str]) -> list[str]:
        return check_shared_with(value)

    @model_validator(mode="after")
    def _owner(self) -> ChunkAcl:
        check_owner(self.owner_type, self.owner_id)
        return self


def _check_user(value: str) -> str:
    if not value.startswith(USER_PREFIX) or value == USER_PREFIX:
        raise ValueError("user_principal must look like 'user:<id>'")
    return value


def _check_shared(value: tuple[str, ...]) -> tuple[str, ...]:
    for entry in value:
        if not entry.startswith((USER_PREFIX, GROUP_PREFIX)) or entry in (USER_PREFIX, GROUP_PREFIX):
            raise ValueError(f"shared_principals entries must be user or group principals, got {entry!r}")
    return value


class AclReader(BaseModel):
    """One person a chunk must be readable by: rule 2 through ``user_principal``, rule 3
    through ``shared_principals`` (their ``user:<id>`` and ``group:<id>``s), rule 1 when the
    filter has ``include_org``. ``user_principal = None`` with no shared principals is a
    person Keel could not resolve: only rule 1 applies, so they read org chunks only."""

    model_config = ConfigDict(frozen=True)

    user_principal: str | None
    shared_principals: tuple[str, ...] = ()

    @field_validator("user_principal")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return None if value is None else _check_user(value)

    @field_validator("shared_principals")
    @classmethod
    def _shared(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_shared(value)

    @model_validator(mode="after")
    def _whole(self) -> AclReader:
        if (self.user_principal is None) != (not self.shared_principals):
            raise ValueError("a reader has a user principal and shared principals, or neither (unresolved)")
        return self

    def reads(self, acl: ChunkAcl, *, include_org: bool) -> bool:
        if include_org and acl.owner_type == "org":
            return True
        if acl.owner_type == "user" and acl.owner_id == self.user_principal:  # None (unresolved) owns nothing
            return True
        return not set(acl.shared_with).isdisjoint(self.shared_principals)


#: Someone present whom Keel could not resolve to a user: reads org chunks only.
UNRESOLVED_READER = AclReader(user_principal=None)


class AclFilter(BaseModel):
    """What a principal -- and, for an audience, every one of its members -- may read,
    independent of any engine.

    A chunk matches when it is readable by every reader of :attr:`readers` (the principal,
    then ``also_readable_by``) -- AND, when ``knowledge_base_ids`` is set, ``kb_id`` is one
    of them (an empty tuple matches nothing). A reader reads a chunk when (``include_org``
    and ``owner_type = org``) or (``owner_type = user`` and ``owner_id`` is its
    ``user_principal``) or ``shared_with`` contains any of its ``shared_principals``.
    """

    model_config = ConfigDict(frozen=True)

    user_principal: str
    shared_principals: tuple[str, ...]
    include_org: bool = True
    knowledge_base_ids: tuple[str, ...] | None = None
    #: The other members of the audience (empty: the principal alone); a conjunction.
    also_readable_by: tuple[AclReader, ...] = ()

    @field_validator("user_principal")
    @classmethod
    def _user(cls, value: str) -> str:
        return _check_user(value)

    @field_validator("shared_principals")
    @classmethod
    def _shared(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("shared_principals must hold at least the user principal")
        return _check_shared(value)

    @property
    def readers(self) -> tuple[AclReader, ...]:
        """Everyone a matching chunk must be readable by: the principal first."""
        me = AclReader(user_principal=self.user_principal, shared_principals=self.shared_principals)
        return (me, *self.also_readable_by)

    @property
    def matches_nothing(self) -> bool:
        """True when no chunk can match (an empty knowledge-base restriction, or an unresolved
        reader without org chunks): adapters skip the query, as they must."""
        if self.knowledge_base_ids is not None and not self.knowledge_base_ids:
            return True
        return not self.include_org and any(r.user_principal is None for r in self.also_readable_by)

    def allows(self, acl: ChunkAcl) -> bool:
        """The rule, evaluated in Python (adapters translate the same description)."""
        if self.knowledge_base_ids is not None and acl.kb_id not in self.knowledge_base_ids:
            return False
        return all(reader.reads(acl, include_org=self.include_org) for reader in self.readers)


def acl_filter(principal: Principal, *, knowledge_base_ids: Sequence[str] | None = None) -> AclFilter:
    """The read filter for ``principal``, optionally narrowed to some knowledge bases."""
    if isinstance(knowledge_base_ids, str):
        raise TypeError("knowledge_base_ids must be a sequence of ids, not a string")
    user = user_principal(principal.user_id)
    groups = sorted(p for p in principal.principal_ids if p.startswith(GROUP_PREFIX))
    return AclFilter(
        user_principal=user,
        shared_principals=(user, *groups),
        include_org=True,
        knowledge_base_ids=None if knowledge_base_ids is None else tuple(dict.fromkeys(knowledge_base_ids)),
    )


def acl_filter_for_audience(
    principal: Principal, audience: Audience | None, *, knowledge_base_ids: Sequence[str] | None = None
) -> AclFilter:
    """The read filter for an answer ``audience`` will see, asked by ``principal``.

    A chunk qualifies only when the asker (a member whether listed or not) and every
    listed member may read it. When anyone present is unresolved, only org chunks
    qualify (org chunks are everyone's, so the resolved members add nothing then).
    ``audience=None``: the asker's own filter, :func:`acl_filter`.
    """
    mine = acl_filter(principal, knowledge_base_ids=knowledge_base_ids)
    if audience is None:
        return mine
    me = mine.readers[0]
    others: dict[AclReader, None] = {}  # de-duplicated, in order
    for member in audience.members:
        theirs = acl_filter(Principal(user_id=member.user_id, groups=tuple(member.groups))).readers[0]
        if theirs != me:
            others[theirs] = None
    if audience.unresolved_members > 0:
        others = {UNRESOLVED_READER: None}
    return mine.model_copy(update={"also_readable_by": tuple(others)})


def can_read(principal: Principal, payload: ChunkAcl, *, audience: Audience | None = None) -> bool:
    """Whether ``principal`` may read the chunk or document described by ``payload`` --
    with ``audience``, whether the answer to that audience may use it."""
    return acl_filter_for_audience(principal, audience).allows(payload)
