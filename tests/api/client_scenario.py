"""Run by test_python_client.py with the Python of a fresh virtual environment that has only
`pip install ./clients/python`: a notebook's first steps against a live server. Prints one JSON line."""

import importlib.util
import json
import sys

url, password, project, folder = sys.argv[1:5]

import lightbox_client  # noqa: E402
from lightbox_client import Client, NotFound  # noqa: E402

assert importlib.util.find_spec("portal") is None, "the server package must not be importable here"
assert importlib.util.find_spec("torch") is None, "torch must not come with the client"

with Client(url, username="admin", password=password, progress=False) as lb:
    uploaded = lb.upload(folder, project)
    series = lb.series(project)
    decision = lb.decide(series[0].series_instance_uid, "U", note="from a fresh venv")
    history = lb.decisions(series[0].series_instance_uid)
    exported = json.loads(lb.export(project, "json"))
    try:
        lb.studies("no-such-project")
        missing = None
    except NotFound as exc:
        missing = {"status": exc.status, "error": exc.error, "suberror": exc.suberror, "detail": exc.detail}

print(json.dumps({
    "version": lightbox_client.__version__, "module": lightbox_client.__file__, "counts": uploaded.counts,
    "series": [s.series_instance_uid for s in series], "instances": [s.instance_count for s in series],
    "decision": decision.decision, "history": [d.note for d in history],
    "exported_projects": sorted(exported["projects"]), "missing": missing,
}))
