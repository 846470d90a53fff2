"""The API process does not load the worker's stack: after ``create_app`` none of the model,
tool and vector SDKs, nor any activity module, is imported (workflows name activities by
the protocols in workflows/activity_defs.py). asyncpg, redis and httpx are the API's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]

WORKER_ONLY = (
    "activities",
    "openai",
    "mcp",
    "agent_framework",
    "torch",
    "sentence_transformers",
    "qdrant_client",
    "qdrant_edge",
)

_PROBE = f"""
import json, sys
from api.main import create_app
from infra.settings import Settings
create_app(Settings())
top = {{name.split(".")[0] for name in sys.modules}}
print(json.dumps({{"loaded": sorted(top & set({WORKER_ONLY!r})), "api": "api.main" in sys.modules,
    "workflow": "workflows.chat_session" in sys.modules}}))
"""


def test_create_app_loads_no_worker_module() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["PYTHONPATH"] = str(_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["api"] and seen["workflow"]  # the probe did import the app and its workflows
    assert seen["loaded"] == [], f"the API process imported {seen['loaded']}"
