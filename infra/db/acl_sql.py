"""The read rule (``core.policy.acl.AclFilter``) as a SQL condition over ``documents``.

Postgres follows the same description as the vector engines: the knowledge-base
restriction AND, for every reader (the asker, then each audience member), one of
org-owned (when ``include_org``), owned by that reader, or shared with one of its
principals. A reader Keel could not resolve has only the org alternative.
"""

from __future__ import annotations

from typing import Any

from core.policy.acl import AclFilter


def acl_sql(acl: AclFilter, *, first_param: int, alias: str = "d") -> tuple[str, list[Any]]:
    """``(condition, params)``: the condition's placeholders start at ``$first_param``."""
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}"

    per_reader: list[str] = []
    for reader in acl.readers:
        alternatives: list[str] = []
        if acl.include_org:
            alternatives.append(f"{alias}.owner_type = 'org'")
        if reader.user_principal is not None:
            owner = param(reader.user_principal)
            alternatives.append(f"({alias}.owner_type = 'user' AND {alias}.owner_id = {owner})")
        if reader.shared_principals:
            alternatives.append(f"({alias}.shared_with && {param(list(reader.shared_principals))}::text[])")
        per_reader.append("(" + " OR ".join(alternatives) + ")" if alternatives else "FALSE")
    sql = " AND ".join(per_reader)
    if acl.knowledge_base_ids is not None:
        sql += f" AND {alias}.kb_id = ANY({param(list(acl.knowledge_base_ids))}::text[])"
    return f"({sql})", params
