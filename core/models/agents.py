"""Agent definitions: declared in YAML, not coded (see docs/agents.md)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AgentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    version: str = Field(default="1", max_length=40)
    description: str = ""
    #: The system prompt; null means the installation's KEEL_SYSTEM_PROMPT.
    instructions: str | None = None
    #: Model (or Azure deployment) override; null means KEEL_LLM_MODEL.
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1)
    #: "all" (every tool the user may use) or model-facing tool names / server names.
    tools: Literal["all"] | list[str] = "all"
    #: Knowledge bases searched by default; null means all the user may read.
    knowledge_bases: list[str] | None = None
    step_limit: int = Field(default=8, ge=1, le=50)

    @property
    def revision(self) -> str:
        """``<version>+<content hash>``: what a session records it ran."""
        digest = hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.version}+{digest}"

    def offers(self, tool_name: str) -> bool:
        if self.tools == "all":
            return True
        server = tool_name.split("__", 1)[0]
        return tool_name in self.tools or server in self.tools
