"""Write (or check) the generated OpenAPI document: ``make openapi``.

    python -m api.openapi_export docs/openapi.json          # write it
    python -m api.openapi_export --check docs/openapi.json  # exit 1 if it is stale

The document comes from ``create_app(settings).openapi()``; the lifespan is not
run, so no Temporal, Postgres or Redis is needed. docs/openapi.json is always
generated this way, never edited by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from api.main import create_app
from infra.settings import Settings


def generate() -> str:
    """The OpenAPI document as pretty JSON with a trailing newline."""
    # Explicit values win over the environment, so a production-like shell cannot
    # make the settings refuse to load; the document does not depend on them.
    settings = Settings(env="development", auth_mode="dev")
    document = create_app(settings).openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m api.openapi_export",
        description="Write the generated OpenAPI document, or check that a file matches it.",
    )
    parser.add_argument("path", type=Path, help="where the document is (e.g. docs/openapi.json)")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if PATH differs from the generated one"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    path: Path = args.path
    expected = generate()
    if args.check:
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            sys.stderr.write(f"{path} does not exist; run `make openapi` to generate it\n")
            return 1
        if current != expected:
            sys.stderr.write(
                f"{path} is out of date with the API; run `make openapi` and commit the result\n"
            )
            return 1
        sys.stdout.write(f"{path} is up to date\n")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(expected, encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
