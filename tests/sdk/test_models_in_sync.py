"""The SDK's models are generated from docs/openapi.json: regenerating them changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_models_match_the_spec() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "sdk" / "python" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, f"keel_sdk/_models.py is out of date (run `make sdk`):\n{result.stderr}"


def test_every_response_schema_of_the_spec_is_a_model() -> None:
    import json

    from keel_sdk import models

    spec = json.loads((REPO / "docs" / "openapi.json").read_text())
    refs = {
        content["schema"]["$ref"].rsplit("/", 1)[-1]
        for path in spec["paths"].values()
        for op in path.values()
        for status, response in op["responses"].items()
        if status.startswith("2")
        for content in response.get("content", {}).values()
        if "$ref" in content.get("schema", {})
    }
    assert refs and not [name for name in refs if not hasattr(models, name)]
