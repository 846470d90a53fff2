"""Load agent definitions: the packaged default plus every ``*.yaml`` in
``KEEL_AGENTS_PATH`` (an admin-managed folder; a file there may override ``default``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from core.errors import ErrorCode, KeelError
from core.models.agents import AgentDefinition


class AgentRegistry:
    def __init__(self, definitions: dict[str, AgentDefinition]) -> None:
        self._definitions = definitions

    @classmethod
    def load(cls, folder: Path | None) -> AgentRegistry:
        texts = [(f.name, f.read_text(encoding="utf-8")) for f in _packaged()]
        if folder is not None:
            texts += [(str(p), p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.y*ml"))]
        definitions: dict[str, AgentDefinition] = {}
        for source, text in texts:
            try:
                definition = AgentDefinition.model_validate(yaml.safe_load(text))
            except (yaml.YAMLError, ValidationError) as exc:
                raise KeelError(
                    ErrorCode.INVALID_REQUEST, f"invalid agent definition {source}: {exc}"
                ) from exc
            definitions[definition.name] = definition
        return cls(definitions)

    def get(self, name: str) -> AgentDefinition:
        try:
            return self._definitions[name]
        except KeyError as exc:
            raise KeelError(ErrorCode.NOT_FOUND, f"no agent named '{name}'") from exc

    def all(self) -> list[AgentDefinition]:
        return sorted(self._definitions.values(), key=lambda d: d.name)


def _packaged() -> list[resources.abc.Traversable]:
    folder = resources.files("infra") / "agent_defs"
    return sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
