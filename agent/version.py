"""The installed ossagent's version (one place: the CLI's --version and the server's /version)."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("ossagent")
    except metadata.PackageNotFoundError:
        return "0+unknown"
