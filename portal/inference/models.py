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


def serves(manifest: dict, project: str | None) -> bool:
    """A version fine-tuned on one project's labels (its manifest names the project) serves that project only."""
    return not manifest.get("project") or manifest.get("project") == project


def for_project(project: str) -> tuple[list[dict], dict[str, dict]]:
    """In one scan of the model folders: the versions that may serve `project` (newest first per name), and
    the one in use for each model name."""
    visible = [m for m in installed() if serves(m, project)]
    in_use: dict[str, dict] = {}
    for m in visible:
        in_use.setdefault(m["name"], m)
    return visible, in_use


def manifest_for(name: str, project: str | None = None, version: str | None = None) -> dict | None:
    """The newest installed version of model `name` that serves `project` (or exactly `version`).

    A version fine-tuned on one project's labels (its manifest names the project) serves that
    project only; general versions serve every project."""
    for m in installed():
        if m["name"] != name:
            continue
        if version is not None:
            if m["version"] == version:
                return m
            continue
        if serves(m, project):
            return m
    return None


def model_dir(name: str, version: str | None = None, project: str | None = None) -> str:
    m = manifest_for(name, project, version)
    return m["dir"] if m else ""


def next_version(name: str) -> str:
    """The next patch version over every installed version of `name` (whichever project it serves)."""
    versions = [m["version"] for m in installed() if m["name"] == name]
    if not versions:
        return "1.0.0"
    newest = max(versions, key=_version_key).split("-")[0].split("+")[0].split(".")
    return ".".join(newest[:-1] + [str(int(newest[-1]) + 1)])
