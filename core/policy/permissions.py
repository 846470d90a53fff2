"""Roles and permissions (the seed's table). Roles come from identity-provider
app roles or mapped group ids; a principal without a role is a User."""

from __future__ import annotations

from enum import StrEnum

from core.models.principal import Principal


class Permission(StrEnum):
    MANAGE_ORG_KB = "manage_org_kb"
    MANAGE_DEPT_KB = "manage_dept_kb"
    MANAGE_TOOLS = "manage_tools"
    UPLOAD_DOCS = "upload_docs"
    QUERY_KB = "query_kb"
    USE_AGENT = "use_agent"
    VIEW_AUDIT_LOGS = "view_audit_logs"
    #: Set and clear per-user token budgets (OrgAdmin only).
    MANAGE_BUDGETS = "manage_budgets"


_ALL = frozenset(Permission)
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "OrgAdmin": _ALL,
    "DeptAdmin": frozenset(
        {
            Permission.MANAGE_DEPT_KB,
            Permission.UPLOAD_DOCS,
            Permission.QUERY_KB,
            Permission.USE_AGENT,
            Permission.VIEW_AUDIT_LOGS,
        }
    ),
    "TeamLead": frozenset({Permission.UPLOAD_DOCS, Permission.QUERY_KB, Permission.USE_AGENT}),
    "User": frozenset({Permission.UPLOAD_DOCS, Permission.QUERY_KB, Permission.USE_AGENT}),
    "ReadOnly": frozenset({Permission.QUERY_KB}),
}
DEFAULT_ROLE = "User"


def permissions_of(principal: Principal) -> frozenset[Permission]:
    roles = [r for r in principal.roles if r in ROLE_PERMISSIONS] or [DEFAULT_ROLE]
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def has_permission(principal: Principal, permission: Permission) -> bool:
    return permission in permissions_of(principal)


def is_granted(principal: Principal, permission: Permission) -> bool:
    """The one access decision for a route's declared permission: the roles must grant it
    and, for an API key, the key's scopes must include it."""
    if not has_permission(principal, permission):
        return False
    return principal.scopes is None or permission.value in principal.scopes


def is_privileged(permission: Permission) -> bool:
    """Permissions whose *allowed* decisions are audited too (denials always are)."""
    return permission in _PRIVILEGED


_PRIVILEGED = frozenset(
    {
        Permission.MANAGE_ORG_KB,
        Permission.MANAGE_DEPT_KB,
        Permission.MANAGE_TOOLS,
        Permission.VIEW_AUDIT_LOGS,
        Permission.MANAGE_BUDGETS,
    }
)
