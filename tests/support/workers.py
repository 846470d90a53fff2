"""A `keel worker` child process pointed at a test's services (for crash tests)."""

from __future__ import annotations

import os
import subprocess
import sys

from infra.settings import Settings


def spawn_worker(settings: Settings, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
    """``keel worker <args>`` with the test's settings (and ``extra_env``) in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        {
            "KEEL_ENV": "test",
            "KEEL_DATA_DIR": str(settings.data_dir / "worker"),
            "KEEL_BLOB_PATH": str(settings.resolved_blob_path),
            "KEEL_TEMPORAL_ADDRESS": settings.resolved_temporal_address,
            "KEEL_DATABASE_URL": str(settings.database_url),
            "KEEL_REDIS_URL": str(settings.redis_url),
            "KEEL_CHAT_TASK_QUEUE": settings.chat_task_queue,
            "KEEL_INGEST_TASK_QUEUE": settings.ingest_task_queue,
            "KEEL_RETRIEVAL_TASK_QUEUE": settings.retrieval_task_queue,
            "KEEL_TOOLS_TASK_QUEUE": settings.tools_task_queue,
            "KEEL_LOG_JSON": "false",
        }
    )
    if settings.llm_base_url and settings.llm_model:
        env.update(
            {
                "KEEL_LLM_BASE_URL": settings.llm_base_url,
                "KEEL_LLM_API_KEY": "test-key",
                "KEEL_LLM_MODEL": settings.llm_model,
            }
        )
    env.update(extra_env)
    return subprocess.Popen([sys.executable, "-m", "workers.cli", "worker", *args], env=env)


def stop_workers(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
