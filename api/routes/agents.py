"""GET /agents: the agent definitions this installation offers (YAML, managed by admins)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import AgentUser, ResourcesDep

router = APIRouter(prefix="/api/v1", tags=["agents"])


class AgentView(BaseModel):
    name: str
    version: str
    revision: str
    description: str
    step_limit: int


class AgentList(BaseModel):
    agents: list[AgentView]
    default: str


@router.get("/agents", operation_id="list_agents", response_model=AgentList)
async def list_agents(principal: AgentUser, resources: ResourcesDep) -> AgentList:
    return AgentList(
        agents=[
            AgentView(
                name=a.name,
                version=a.version,
                revision=a.revision,
                description=a.description,
                step_limit=a.step_limit,
            )
            for a in resources.agents.all()
        ],
        default=resources.settings.default_agent,
    )
