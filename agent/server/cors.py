"""Cross-origin requests (browser JavaScript calling the server): off unless origins are configured.

``ossagent serve --cors-origin https://app.example`` (repeatable; ``*`` for any origin) lets pages from those
origins call the API, preflight ``OPTIONS`` included; without it browsers refuse cross-origin calls, which is
the safe default for a server that runs code tools.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware


def add_cors(app: FastAPI, origins: Sequence[str]) -> None:
    if not origins:
        return
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                       allow_headers=["*"], allow_credentials="*" not in origins, max_age=600)
