"""Who may read a knowledge-base chunk: the ONE place the read rule is written
(docs/knowledge.md, Access control).

A principal may read a chunk when any of these holds:

1. ``owner_type = org``;
2. ``owner_type = user`` and ``owner_id`` is the principal's ``user:<id>``;
3. ``shared_with`` contains the principal's ``user:<id>`` or one of its ``group:<id>``.

``owner_type = department`` is phase 2: such a chunk is readable only through
rule 3 (an explicit share) until departments exist on :class:`Principal`.
``visibility`` is descriptive and plays no part in the rule: ``shared_with`` is
authoritative, so unsharing must empty it (``VectorIndex.set_document_acl``).

:func:`acl_filter` turns a principal into an :class:`AclFilter`, a neutral
description that every vector adapter translates into its engine's filter
(``infra.vector``); :func:`can_read` applies the very same description in
Python, for metadata rows read from Postgres. No query path builds its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

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


class AclFilter(BaseModel):
    """What a principal may read, independent of any engine.

    A chunk matches when (``include_org`` and ``owner_type = org``) or
    (``owner_type = user`` and ``owner_id = user_principal``) or ``shared_with``
    contains any of ``shared_principals`` -- AND, when ``knowledge_base_ids`` is
    set, ``kb_id`` is one of them (an empty tuple matches nothing).
    """

    model_config = ConfigDict(frozen=True)

    user_principal: str
    shared_principals: tuple[str, ...]
    include_org: bool = True
    knowledge_base_ids: tuple[str, ...] | None = None

    @field_validator("user_principal")
    @classmethod
    def _user(cls, value: str) -> str:
        if not value.startswith(USER_PREFIX) or value == USER_PREFIX:
            raise ValueError("user_principal must look like 'user:<id>'")
        return value

    @field_validator("shared_principals")
    @classmethod
    def _shared(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("shared_principals must hold at least the user principal")
        for entry in value:
            if not entry.startswith((USER_PREFIX, GROUP_PREFIX)) or entry in (USER_PREFIX, GROUP_PREFIX):
                raise ValueError(f"shared_principals entries must be user or group principals, got {entry!r}")
        return value

    @property
    def matches_nothing(self) -> bool:
        """True when the knowledge-base restriction is empty: adapters may skip the query."""
        return self.knowledge_base_ids is not None and not self.knowledge_base_ids

    def allows(self, acl: ChunkAcl) -> bool:
        """The rule, evaluated in Python (adapters translate the same description)."""
        if self.knowledge_base_ids is not None and acl.kb_id not in self.knowledge_base_ids:
            return False
        if self.include_org and acl.owner_type == "org":
            return True
        if acl.owner_type == "user" and acl.owner_id == self.user_principal:
            return True
        return not set(acl.shared_with).isdisjoint(self.shared_principals)


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


def can_read(principal: Principal, payload: ChunkAcl) -> bool:
    """Whether ``principal`` may read the chunk or document described by ``payload``."""
    return acl_filter(principal).allows(payload)
