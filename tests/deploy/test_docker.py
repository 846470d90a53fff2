"""The Dockerfile, read (Docker cannot pull images here, so it is not built in these tests)."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.deploy.conftest import CHART, REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
LINES = [
    line.strip() for line in DOCKERFILE.splitlines() if line.strip() and not line.lstrip().startswith("#")
]


def stages() -> list[list[str]]:
    found: list[list[str]] = []
    for line in LINES:
        if line.startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def test_python_311_slim_with_a_node_stage_for_the_web_libraries() -> None:
    bases = [stage[0].split()[1] for stage in stages()]
    assert bases[-1] == "python:3.11-slim"
    assert any(b.startswith("node:") for b in bases)
    (web,) = [s for s in stages() if s[0].split()[1].startswith("node:")]
    assert any(line.startswith("COPY package.json package-lock.json") for line in web)
    assert any(line.startswith("RUN npm ci") for line in web)


def test_torch_cpu_wheel_is_installed_before_keel_and_matches_the_pin() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    torch_line = next(i for i, line in enumerate(LINES) if "pip install torch" in line)
    assert f"pip install {pin} " in LINES[torch_line] + " "
    assert "--index-url https://download.pytorch.org/whl/cpu" in LINES[torch_line]
    keel_line = next(i for i, line in enumerate(LINES) if re.search(r"pip install \.(\s|$)", line))
    assert torch_line < keel_line


def test_node_modules_land_where_the_api_serves_them_from() -> None:
    # api/web/pages.py: NODE_MODULES = <dir of api/web>.parents[1] / "node_modules", i.e. next to
    # the installed `api` package in site-packages
    pages = (REPO / "api" / "web" / "pages.py").read_text()
    assert '_HERE.parents[1] / "node_modules"' in pages
    (copy,) = [line for line in LINES if line.startswith("COPY --from=web")]
    assert copy.split()[-1].endswith("/lib/python3.11/site-packages/node_modules")


def test_runs_as_the_charts_non_root_user_with_keel_as_entrypoint() -> None:
    users = [line.split()[1] for line in LINES if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert users[-1].split(":")[0] == str(values["podSecurityContext"]["runAsUser"])
    assert 'ENTRYPOINT ["keel"]' in LINES


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".keel-data", "node_modules"} <= ignored
    # …but not what the build copies
    for line in LINES:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert source not in ignored, source
