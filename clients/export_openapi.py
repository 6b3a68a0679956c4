"""Write the app's OpenAPI document, the input of both generated clients, without a server.

    python -m clients.export_openapi [clients/openapi.json]     # `make client` runs this

The app is built with the default settings, whatever the environment or `.env` say, and the
JSON is written with sorted keys and a fixed layout, so every machine writes the same bytes
for the same routes and CI can tell a stale client by `git diff`.
"""

import json
import sys
from pathlib import Path
from typing import Any

from core.config import Settings
from main import create_app

DEFAULT_TARGET = Path(__file__).resolve().parent / "openapi.json"


def openapi_document() -> dict[str, Any]:
    # model_construct() takes the defaults declared on Settings and reads no environment:
    # a PROJECT_NAME or DOCS_ENABLED set on this machine must not change the clients.
    app = create_app(Settings.model_construct())
    try:
        return app.openapi()
    finally:
        app.state.database.dispose()


def openapi_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else DEFAULT_TARGET
    document = openapi_document()
    text = openapi_text(document)
    # Rewritten only when it changed, so its timestamp says when the API last did.
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    print(f"{target}: {len(document['paths'])} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
