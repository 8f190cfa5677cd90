"""The JSON file: MIQA's nesting (projects → experiments → scans → frames) with Lightbox's additions on each
scan: the whole decision history, form submissions and AI results with their model versions."""

from __future__ import annotations

import json

from portal.exchange import records
from portal.forms.validation import is_answer
from portal.exchange.records import AiIn, DecisionIn, FrameIn, Parsed, SubmissionIn, parse_time

FORMAT, VERSION = "lightbox", 1


def write(document: dict, out) -> None:
    json.dump(document, out, indent=1, ensure_ascii=False)
    out.write("\n")


def read(text: str, parsed: Parsed, artifacts_known: list[str]) -> None:
    duplicates: list[str] = []

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                duplicates.append(k)
            out[k] = v
        return out

    try:
        doc = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        parsed.problem(f"line {exc.lineno}", "", f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).")
        return
    for key in duplicates:
        parsed.problem("", key, f"Duplicate key '{key[:60]}': an object names it twice and one would be lost.")
    if not isinstance(doc, dict) or not isinstance(doc.get("projects"), dict):
        parsed.problem("", "projects", 'The JSON must be an object with "projects": {"<project name>": '
                       '{"experiments": {...}}}.')
        return
    for name, project in doc["projects"].items():
        where = f"projects.{name}"
        parsed.project_names.setdefault(name, []).append(where)
        if not _is(project, dict, parsed, where, "an object with \"experiments\""):
            continue
        for i, form in enumerate(project.get("forms") or []):
            _form(form, f"{where}.forms[{i}]", parsed)
        experiments = project.get("experiments", {})
        if not _is(experiments, dict, parsed, f"{where}.experiments", "an object of experiments"):
            continue
        for exp_name, exp in experiments.items():
            _experiment(exp_name, exp, parsed, artifacts_known)


def _is(value, kind, parsed: Parsed, where: str, what: str) -> bool:
    if isinstance(value, kind):
        return True
    parsed.problem(where, "", f"Expected {what} here, found {type(value).__name__}.")
    return False


def _form(form, where: str, parsed: Parsed) -> None:
    if not isinstance(form, dict) or not isinstance(form.get("name"), str) or not isinstance(form.get("version"), int):
        parsed.problem(where, "", "A form needs a name and an integer version.")
        return
    parsed.forms[(form["name"], form["version"])] = {
        "name": form["name"], "version": form["version"], "title": str(form.get("title", "")),
        "description": str(form.get("description", "")), "fields": form.get("fields") or []}


def _experiment(exp_name: str, exp, parsed: Parsed, artifacts_known: list[str]) -> None:
    where = f"{exp_name}"
    if not _is(exp, dict, parsed, where, 'an object with "scans"'):
        return
    scans = exp.get("scans", {})
    if not _is(scans, dict, parsed, f"{where}.scans", "an object of scans"):
        return
    archive = str(exp.get("archive", "") or "")
    for scan_name, scan in scans.items():
        swhere = f"{exp_name} / {scan_name}"
        if not _is(scan, dict, parsed, swhere, 'an object with "frames"'):
            continue
        frames = scan.get("frames", {})
        if isinstance(frames, list):
            frames = {str(i): f for i, f in enumerate(frames)}
        if not _is(frames, dict, parsed, f"{swhere} / frames", "an object of frames"):
            continue
        for number, frame in frames.items():
            fwhere = f"{swhere} / frames.{number}"
            try:
                n = int(number)
                if n < 0:
                    raise ValueError
            except ValueError:
                parsed.problem(fwhere, "frame_number", f"Frame number '{str(number)[:20]}' is not a whole number ≥ 0.")
                continue
            if isinstance(frame, str):
                frame = {"file_location": frame}
            if not isinstance(frame, dict) or not isinstance(frame.get("file_location"), str) or not frame["file_location"]:
                parsed.problem(fwhere, "file_location", "A frame needs a file_location.")
                continue
            parsed.frames.append(FrameIn(fwhere, exp_name, scan_name, str(scan.get("type", "")), n,
                                         frame["file_location"], str(frame.get("sop_instance_uid", "") or ""),
                                         str(frame.get("md5", "") or ""), archive,
                                         notes=str(exp.get("notes", "") or ""),
                                         subject_id=str(exp.get("subject_id", "") or ""),
                                         session_id=str(exp.get("session_id", "") or ""),
                                         scan_link=str(scan.get("scan_link", "") or "")))
        history = scan.get("decisions")
        if history is None and scan.get("last_decision"):
            history = [scan["last_decision"]]
        for i, d in enumerate(history or []):
            _decision(d, f"{swhere} / decisions[{i}]", exp_name, scan_name, parsed, artifacts_known)
        for i, s in enumerate(scan.get("form_submissions") or []):
            _submission(s, f"{swhere} / form_submissions[{i}]", exp_name, scan_name, parsed)
        for i, a in enumerate(scan.get("ai_results") or []):
            _ai(a, f"{swhere} / ai_results[{i}]", exp_name, scan_name, parsed)


def _time(value, where: str, field_name: str, parsed: Parsed):
    try:
        return parse_time(value if isinstance(value, str) else "")
    except ValueError as exc:
        parsed.problem(where, field_name, f"Bad date: {exc}.")
        return None


def _decision(d, where, exp_name, scan_name, parsed: Parsed, artifacts_known) -> None:
    if not isinstance(d, dict):
        parsed.problem(where, "", "A decision must be an object.")
        return
    code, creator = str(d.get("decision", "") or ""), str(d.get("creator", "") or "")
    if not code:
        parsed.problem(where, "decision", "The decision code is missing.")
    if not creator:
        parsed.problem(where, "creator", "The decision's creator is missing.")
    created = _time(d.get("created"), where, "created", parsed)
    artifacts = d.get("user_identified_artifacts") or {}
    if not isinstance(artifacts, dict):
        parsed.problem(where, "user_identified_artifacts", "Artifacts must be an object {name: 1 | 0 | -1}.")
        artifacts = {}
    for name, value in artifacts.items():
        if name not in artifacts_known:
            parsed.problem(where, "user_identified_artifacts", f"Unknown artifact '{name[:40]}'; this project's "
                           "artifacts: " + ", ".join(artifacts_known) + ".")
        elif value not in (1, 0, -1):
            parsed.problem(where, "user_identified_artifacts", f"Artifact '{name}' must be 1, 0 or -1.")
    location = records.location(d.get("location"), parsed, where, "location")
    if code and creator and created:
        parsed.decisions.append(DecisionIn(where, exp_name, scan_name, code, creator, created,
                                           note=str(d.get("note", "") or ""),
                                           role=d["role"] if isinstance(d.get("role"), str) else None,
                                           artifacts={k: v for k, v in artifacts.items() if v in (1, 0)},
                                           location=location))


def _submission(s, where, exp_name, scan_name, parsed: Parsed) -> None:
    if not isinstance(s, dict) or not isinstance(s.get("form"), str) or not isinstance(s.get("form_version"), int):
        parsed.problem(where, "form", "A form submission needs its form name and integer form_version.")
        return
    if not isinstance(s.get("entry"), dict):
        parsed.problem(where, "entry", "A form submission's entry must be an object.")
        return
    if not all(is_answer(v) for v in s["entry"].values()):
        parsed.problem(where, "entry", "A form submission's answers are texts, numbers, true/false or lists of texts.")
        return
    created = _time(s.get("created"), where, "created", parsed)
    if created:
        parsed.submissions.append(SubmissionIn(where, exp_name, scan_name, s["form"], s["form_version"],
                                               str(s.get("creator", "") or ""), str(s.get("email", "") or ""),
                                               created, s["entry"], str(s.get("entry_formatted", "") or "")))


def _ai(a, where, exp_name, scan_name, parsed: Parsed) -> None:
    model = a.get("model") if isinstance(a, dict) else None
    if not isinstance(model, dict) or not model.get("name") or not isinstance(a.get("results"), list):
        parsed.problem(where, "model", "An AI result needs model {name, version} and a list of results.")
        return
    finished = _time(a.get("finished"), where, "finished", parsed)
    results = []
    for r in a["results"]:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            parsed.problem(where, "results", "Each AI result needs a name.")
            return
        value = r.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            parsed.problem(where, "results", f"Result '{r['name']}': value must be a number or null.")
            return
        results.append({"name": r["name"], "algorithm": str(r.get("algorithm", "") or ""), "value": value,
                        "text": str(r.get("text", "") or ""), "type": str(r.get("type", "float") or "float")})
    if finished:
        parsed.ai.append(AiIn(where, exp_name, scan_name, str(model["name"]), str(model.get("version", "") or ""),
                              finished, results))
