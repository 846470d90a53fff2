"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from temporalio.client import Client

from api.security import authenticate
from api.state import ApiResources
from core.models.principal import Principal
from core.policy.permissions import Permission
from infra.settings import Settings


def get_resources(request: Request) -> ApiResources:
    resources: ApiResources = request.app.state.resources
    return resources


ResourcesDep = Annotated[ApiResources, Depends(get_resources)]


def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


def get_temporal(resources: ResourcesDep) -> Client:
    return resources.temporal


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


def requires(permission: Permission) -> Any:
    """``Annotated[Principal, requires(Permission.X)]``: the caller, who must hold ``X``."""
    return Security(authenticate, scopes=[permission.value])


PrincipalDep = Annotated[Principal, Security(authenticate)]
"""Any authenticated caller (rate-limited); routes that need a permission use the aliases below."""
AgentUser = Annotated[Principal, requires(Permission.USE_AGENT)]
KbReader = Annotated[Principal, requires(Permission.QUERY_KB)]
Uploader = Annotated[Principal, requires(Permission.UPLOAD_DOCS)]
OrgKbAdmin = Annotated[Principal, requires(Permission.MANAGE_ORG_KB)]
ToolAdmin = Annotated[Principal, requires(Permission.MANAGE_TOOLS)]
AuditViewer = Annotated[Principal, requires(Permission.VIEW_AUDIT_LOGS)]
BudgetAdmin = Annotated[Principal, requires(Permission.MANAGE_BUDGETS)]
