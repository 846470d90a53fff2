"""Who may change a document or add to a knowledge base (reading is core.policy.acl)."""

from __future__ import annotations

from core.models.principal import Principal, user_principal
from core.policy.permissions import Permission, has_permission


def can_manage(principal: Principal, *, owner_type: str, owner_id: str) -> bool:
    """Owners manage their own; org resources need manage_org_kb (OrgAdmin)."""
    if owner_type == "user":
        return owner_id == user_principal(principal.user_id) and has_permission(
            principal, Permission.UPLOAD_DOCS
        )
    if owner_type == "org":
        return has_permission(principal, Permission.MANAGE_ORG_KB)
    return has_permission(principal, Permission.MANAGE_ORG_KB)  # departments: phase 2
