"""Which installed models a project may use: the project-scoping rule over the one registry (portal/ai/registry.py).

The registry scans the model folders (built-in ones under portal/ai/models, added and trained ones under
{data dir}/models) and keeps only usable models: a valid manifest *and* its model file (present, non-empty, a
TorchScript archive, matching its sha256). A folder an interrupted `lightbox model train` left without weights is
skipped, so it can never become the version "in use". This module adds what a project sees: a version fine-tuned
on one project's labels (its manifest names the project) serves that project only.
"""

from __future__ import annotations

from pathlib import Path

from portal import settings as settings_mod
from portal.ai import registry

BUILTIN_DIR = registry.builtin_models_root()


def search_dirs() -> list[Path]:
    return [settings_mod.current().data_dir / "models", BUILTIN_DIR]


def installed() -> list[dict]:
    """Every usable model: [{name, version, dir, ...manifest}], by name (descending), newest version first."""
    found = [{**m.to_dict(), "dir": str(m.directory)} for m in registry.list_models([search_dirs()[0]])]
    return sorted(found, key=lambda m: (m["name"], registry.version_key(m["version"])), reverse=True)


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
    """The newest installed version of model `name` that serves `project` (or exactly `version`)."""
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
    newest = max(versions, key=registry.version_key).split("-")[0].split("+")[0].split(".")
    return ".".join(newest[:-1] + [str(int(newest[-1]) + 1)])


def evaluation_summary(manifest: dict) -> dict | None:
    """The headline figures of a model's evaluation.json for the AI page (None without one): held-out macro AUC,
    the quality output's AUC for "any artifact", the critical alert's false-alert rate on clean images and its
    detection of severe artifacts (overall and by matrix size) at the threshold the model ships with, where some
    evaluation measured them (`critical_source` says which), and `notes` from independent measurements."""
    import json

    path = Path(manifest.get("dir", "")) / "evaluation.json"
    try:
        ev = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    test = ev.get("test_B") or ev.get("test") or {}  # 1.2.0 on: the held-out artifact implementation
    if "quality_any_artifact" in test:
        test = {**test, "quality_auc_any_artifact": test["quality_any_artifact"]["auc"]}
    native = _native_evaluation(Path(manifest["dir"]))
    independent = ev.get("independent") or {}
    if ev.get("critical"):
        critical, source = ev["critical"], "its own held-out evaluation"
    elif native.get("critical") and native["critical"].get("threshold") == (manifest.get("critical") or {}).get("below"):
        # only at the threshold the model ships with: a re-chosen one would flatter the alert people get
        critical, source = native["critical"], "measured again by 1.2.0's evaluation"
    elif independent.get("critical"):
        critical, source = independent["critical"], "an independent measurement"
    else:
        critical, source = None, ""
    cmp = (ev.get("compare") or {}).get("shipped") or {}
    compared = (f"Against {ev['compare']['version']} on the same samples: macro AUC {cmp['macro_auc_B']:.3f}; its critical "
                f"alert (quality < {cmp['threshold']}) fires on {100 * cmp['false_alert_rate_B']:.1f}% of clean images and "
                f"catches {100 * cmp['severe_detection_B']:.0f}% of severe artifacts."
                if cmp.get("macro_auc_B") is not None and cmp.get("false_alert_rate_B") is not None else None)
    notes = [n for n in (
        compared,
        f"Independent measurement ({independent['source']}): macro AUC {independent['macro_auc']:.2f}, quality vs "
        f"any artifact {independent['quality_auc_any_artifact']:.2f}." if independent.get("macro_auc") else None,
        native.get("note")) if n]
    return {"macro_auc": test.get("macro_auc"), "quality_auc": test.get("quality_auc_any_artifact"),
            "critical": critical, "critical_source": source, "notes": notes,
            "document": str(Path(manifest["dir"]) / "EVALUATION.md")}


def _native_evaluation(folder: Path) -> dict:
    """An older version measured again by 1.2.0's evaluation (evaluation-native.json beside it), if it was."""
    import json

    try:
        ev = json.loads((folder / "evaluation-native.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    b = ev.get("test_B") or {}
    if b.get("macro_auc") is None:
        return {}
    c = b.get("critical") or {}
    alert = (f"; critical alert at quality < {c['threshold']}: {100 * c['false_alert_rate']:.1f}% false alerts on clean "
             f"images, {100 * c['severe_detection']:.0f}% of severe artifacts caught"
             if c.get("false_alert_rate") is not None and c.get("severe_detection") is not None else "")
    return {"critical": c or None,
            "note": f"Measured again by 1.2.0's evaluation (held-out sources, held-out artifact implementation, "
                    f"native matrices 64-2048 px): macro AUC {b['macro_auc']:.3f}{alert} (EVALUATION-native.md)."}
