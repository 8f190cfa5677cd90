"""AI suggestions for the reviewer: a model's artifact outputs, named in the project's artifact vocabulary.

The project's `ai_artifact_map` says which project artifact each model output suggests (`{output: artifact}`);
the default maps the built-in model's outputs to MIQA's names. An output without a mapping, or mapped to a name
the project's artifact list does not hold, suggests nothing on the decision panel (the AI panel still shows its
score). A suggestion is only a mark on the panel: nothing is saved until the reviewer decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# lightbox-quality's outputs → MIQA's default artifact names. MIQA has no name for thermal noise or an RF spike.
DEFAULT_MAP: dict[str, str] = {
    "motion": "ghosting_motion",
    "wraparound": "swap_wraparound",
    "bias_field": "inhomogeneity",
    "gibbs": "truncation_artifact",
}


def suggest(results: Iterable[Mapping], mapping: Mapping[str, str], artifacts: Iterable[str],
            threshold: float) -> dict[str, dict]:
    """{project artifact: {"output", "value"}} for each probability output at or above `threshold` whose mapped
    name is in `artifacts`; when two outputs map to one artifact, the higher value speaks."""
    known = set(artifacts)
    out: dict[str, dict] = {}
    for r in results:
        if r.get("type") != "probability" or r.get("value") is None or float(r["value"]) < threshold:
            continue
        name = mapping.get(r["name"])
        if not name or name not in known:
            continue
        if name not in out or float(r["value"]) > out[name]["value"]:
            out[name] = {"output": r["name"], "value": float(r["value"])}
    return out


def check_map(value, artifacts: Iterable[str]) -> dict[str, str]:
    """A project's `ai_artifact_map` from a form or API: {output name: one of the project's artifacts}; an empty
    target drops the output."""
    from portal.errors import Invalid

    if not isinstance(value, dict):
        raise Invalid("The artifact mapping must be an object {model output: project artifact}.", "invalid_setting")
    known = set(artifacts)
    out = {}
    for output, target in value.items():
        target = str(target or "").strip()
        if not target:
            continue
        if target not in known:
            raise Invalid(f"'{target}' (for {output}) is not one of this project's artifacts: "
                          f"{', '.join(sorted(known))}.", "invalid_setting")
        out[str(output)] = target
    return out


async def for_series(project, series) -> dict[str, dict]:
    """The suggestions of the series' latest finished job under the project's mapping and threshold."""
    from portal import projects
    from portal.inference import jobs

    job = await jobs.latest(series)
    if job is None or job["state"] != jobs.DONE:
        return {}
    conf = projects.settings_of(project)
    return suggest(job["results"], conf.get("ai_artifact_map") or {}, conf["artifacts"],
                   float(conf["ai_suggest_threshold"]))
