"""Installed models: the built-in one shipped with Lightbox and those added under the data dir."""

from __future__ import annotations

import json
from pathlib import Path

from portal import settings as settings_mod

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "ai" / "models"


def search_dirs() -> list[Path]:
    return [settings_mod.current().data_dir / "models", BUILTIN_DIR]


def installed() -> list[dict]:
    """Every model manifest found: [{name, version, dir, ...}], newest version of each name first."""
    found = []
    for root in search_dirs():
        for manifest in sorted(root.glob("*/*/manifest.json")):
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("name") and data.get("version"):
                found.append({**data, "dir": str(manifest.parent)})
    return sorted(found, key=lambda m: (m["name"], _version_key(m["version"])), reverse=True)


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in str(version).split("."))


def manifest_for(name: str) -> dict | None:
    """The newest installed version of model `name`."""
    return next((m for m in installed() if m["name"] == name), None)


def model_dir(name: str) -> str:
    m = manifest_for(name)
    return m["dir"] if m else ""
