"""What integrators read back: Qure-style and CAD4TB-style result documents built from a series' latest job."""

from __future__ import annotations

import io
import json
import zipfile
from xml.sax.saxutils import escape

from portal import clock
from portal.inference import jobs, models

QURE_PENDING = "{uid} is under process. Please check back in some time."


def job_dict(job: dict | None) -> dict | None:
    if job is None:
        return None
    return {"id": job["id"], "state": job["state"], "model": {"name": job["model_name"], "version": job["model_version"]},
            "attempts": job["attempts"], "error": job["error"], "queued": clock.iso(job["queued_at"]),
            "started": clock.iso(job["started_at"]), "finished": clock.iso(job["finished_at"])}


def qure(uid: str, job: dict | None, asset_url, *, critical: bool = False) -> dict:
    """The Qure-style results document; `asset_url(asset_row)` makes each file's URL; `critical` when the
    job raised an alert."""
    if job is None or job["state"] in jobs.ACTIVE:
        return {"success": False, "message": QURE_PENDING.format(uid=uid)}
    if job["state"] == jobs.NOT_APPLICABLE:
        return {"success": False, "message": f"No model applies to {uid}: {job['error']}"}
    if job["state"] == jobs.FAILED:
        return {"success": False, "message": f"Processing {uid} failed: {job['error']}"}
    manifest = models.manifest_for(job["model_name"], version=job["model_version"]) or {}
    scores = {r["name"]: r["value"] for r in job["results"]}
    report = job["assets"].get("report")
    return {
        "success": True, "message": "Results are available.",
        "triage_status": "Critical" if critical else "Routine",
        "usecase": manifest.get("usecase", "image quality"),
        "model": {"name": job["model_name"], "version": job["model_version"]},
        "result": {"report": _text(report), "scores": scores,
                   "files": {kind: [asset_url(a)] for kind, a in job["assets"].items()}},
    }


def _text(asset: dict | None) -> str:
    if asset is None:
        return ""
    from portal.archive import storage

    return storage().read_bytes(asset["file_key"]).decode("utf-8", errors="replace")


def representative(job: dict | None) -> dict | None:
    """The frame the job's heatmap belongs to ({sop_instance_uid, frame, ...}), from its JSON asset."""
    asset = (job or {}).get("assets", {}).get("json")
    if asset is None:
        return None
    try:
        return json.loads(_text(asset)).get("representative") or None
    except ValueError:
        return None


def scalars(job: dict, names: list[str]) -> list[dict]:
    return [{"name": r["name"], "algorithm": r["algorithm"], "value": r["value"]}
            for r in job["results"] if not names or r["name"] in names]


def results_zip(job: dict, names: list[str]) -> bytes:
    """The CAD4TB-style zip: the requested files, plus an XML of the requested scalars."""
    from portal.archive import storage

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for kind, asset in job["assets"].items():
            if not names or kind in names:
                ext = {"heatmap": "png", "json": "json", "report": "txt", "sr": "dcm", "sc": "dcm",
                       "pdf": "pdf"}.get(kind, "bin")
                z.writestr(f"{kind}.{ext}", storage().read_bytes(asset["file_key"]))
        rows = "".join(f'  <result name="{escape(r["name"])}" algorithm="{escape(r["algorithm"])}" '
                       f'value="{r["value"]}"/>\n' for r in scalars(job, names))
        z.writestr("results.xml", f'<?xml version="1.0" encoding="UTF-8"?>\n<results model="{escape(job["model_name"])}" '
                                  f'version="{escape(job["model_version"])}">\n{rows}</results>\n')
    return out.getvalue()
