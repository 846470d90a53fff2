"""Generate ``keel_sdk/_models.py`` (pydantic v2) from Keel's OpenAPI document.

    python sdk/python/generate.py            # write keel_sdk/_models.py from docs/openapi.json
    python sdk/python/generate.py --check    # exit 1 when the file is not what the spec gives

Runs datamodel-code-generator (pinned in Keel's ``dev`` extra), then the repository's
ruff (format, and the import-sorting fix) so the file passes ``make lint`` as it is.
Re-run it whenever docs/openapi.json changes (``make openapi sdk``).
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPEC = REPO / "docs" / "openapi.json"
TARGET = HERE / "keel_sdk" / "_models.py"
HEADER = (
    '"""Keel API models, generated from docs/openapi.json by sdk/python/generate.py.\n\n'
    "Do not edit: change the API, run ``make openapi sdk``; tests/sdk/test_models_in_sync.py\n"
    'fails when this file and the spec disagree."""\n\n'
    "# ruff: noqa: E501\n"
)
CODEGEN_ARGS = [
    "--input-file-type",
    "openapi",
    "--output-model-type",
    "pydantic_v2.BaseModel",
    "--target-python-version",
    "3.11",
    "--disable-timestamp",
    "--use-annotated",
    "--use-type-alias",
    "--collapse-root-models",
    "--enum-field-as-literal",
    "all",
    "--use-schema-description",
    "--use-field-description",
    "--use-double-quotes",
    "--formatters",
    "builtin",
]


def render(spec: Path = SPEC) -> str:
    """The models module for ``spec``, formatted as the repository formats code."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "_models.py"
        cmd = [sys.executable, "-m", "datamodel_code_generator", "--input", str(spec), "--output", str(raw)]
        subprocess.run([*cmd, *CODEGEN_ARGS], check=True)
        body = raw.read_text(encoding="utf-8")
    lines = body.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):  # the generator's own header names a temp path
        lines.pop(0)
    text = HEADER + "".join(lines)
    name = str(TARGET.relative_to(REPO))
    for step in (["check", "--fix-only", "--select", "I,UP,F401", "--quiet"], ["format", "--quiet"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *step, "--stdin-filename", name, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the models are out of date")
    parser.add_argument("--spec", type=Path, default=SPEC)
    args = parser.parse_args(argv)
    text = render(args.spec)
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
    if args.check:
        if text == current:
            return 0
        diff = difflib.unified_diff(current.splitlines(True), text.splitlines(True), "committed", "generated")
        sys.stderr.write("".join(diff))
        sys.stderr.write(f"\n{TARGET.relative_to(REPO)} is out of date: run `make sdk`\n")
        return 1
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
