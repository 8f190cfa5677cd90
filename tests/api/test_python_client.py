"""The Python client (clients/python, issue 17) against a live `lightbox serve`: it installs alone in a fresh
virtual environment, uploads files, folders and zips, lists with QIDO-RS filters, reads AI results, records and
reads decisions, exports (bytes or a file) and imports, raises the API's errors as exceptions and retries
429/503; and the remote CLI (`lightbox --url … --token …`) runs ingest, export and import through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from portal.dicom import open_dataset, samples
from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import live_server, live_server_env  # noqa: F401 (fixtures: one server for the module)

lightbox_client = pytest.importorskip("lightbox_client", reason="pip install -e ./clients/python (make install)")
from lightbox_client import BadRequest, Client, NotFound, RateLimited, RunFailed, Unauthorized  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "python"
PROJECT = "qc"


@pytest.fixture(scope="module")
def server(live_server):  # noqa: F811
    r = live_server.api("POST", "/api/v1/projects", json={"name": PROJECT})
    assert r.status_code == 201, r.text
    return live_server


@pytest.fixture(scope="module")
def token(server) -> str:
    r = httpx.post(server.url + "/api-token-auth/", json={"username": "admin", "password": ADMIN_PASSWORD})
    return r.json()["token"]


@pytest.fixture
def lb(server, token):
    with Client(server.url, token=token, progress=False) as c:
        yield c


def _series(folder: Path, n: int, patient_id: str, sample: str = "CT_small.dcm") -> list[Path]:
    return samples.make_series(samples.sample_path(sample), folder, n, patient_id=patient_id)


def _uid(path: Path, keyword: str = "SeriesInstanceUID") -> str:
    return str(getattr(open_dataset(path, stop_before_pixels=True), keyword))


def test_the_client_installs_alone_in_a_fresh_venv_and_works(server, tmp_path):
    venv = tmp_path / "venv"
    # An empty environment, and this pip installing into it (`pip --python`): the same install as `pip install
    # ./clients/python` inside it, without seeding a pip of its own. httpx and tqdm come from the package
    # index, through pip's cache.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", py]
    out = subprocess.run([*pip, "install", "-q", "--disable-pip-version-check", str(CLIENT_DIR)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = json.loads(subprocess.run([*pip, "list", "--format=json"], capture_output=True, text=True,
                                       check=True).stdout)
    names = {p["name"].lower() for p in listed}
    assert {"lightbox-client", "httpx", "tqdm"} <= names
    assert not names & {"lightbox", "torch", "litestar", "pydicom", "piccolo", "numpy"}, names

    folder = tmp_path / "scans"
    files = _series(folder, 3, "VENV-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LIGHTBOX_"))}
    out = subprocess.run([py, "-I", str(Path(__file__).with_name("client_scenario.py")), server.url, ADMIN_PASSWORD,
                          PROJECT, str(folder)], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["module"].startswith(str(venv)), got["module"]  # the installed copy, not the repo's
    assert got["counts"] == {"stored": 3}
    uid = _uid(files[0])
    assert uid in got["series"]
    assert got["decision"] == "U" and got["history"][0] == "from a fresh venv"
    assert got["exported_projects"] == [PROJECT]
    assert got["missing"]["status"] == 404 and got["missing"]["error"] == "object_not_found"
    assert got["missing"]["detail"]


def test_upload_takes_files_folders_and_zips_and_says_what_it_refused(lb, tmp_path):
    loose = _series(tmp_path / "loose", 2, "UP-1")
    folder = tmp_path / "folder"
    in_folder = _series(folder / "deep" / "er", 3, "UP-2")
    (folder / "notes.txt").write_text("not DICOM")
    zipped = _series(tmp_path / "z", 2, "UP-3")
    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in zipped:
            z.write(f, f.name)
    result = lb.upload([*loose, folder, archive], PROJECT, batch_files=2)
    assert result.counts == {"stored": 7, "rejected": 1}, result
    assert result.stored == 7 and result.rejected == 1 and not result.ok
    assert [f["status"] for f in result.failed] == ["rejected"] and result.failed[0]["filename"].endswith("notes.txt")
    assert set(result.series_instance_uids) == {_uid(loose[0]), _uid(in_folder[0]), _uid(zipped[0])}

    again = lb.upload(loose, PROJECT)
    assert again.counts == {"already_stored": 2} and again.ok
    with pytest.raises(FileNotFoundError):
        lb.upload(tmp_path / "nowhere", PROJECT)


def test_studies_and_series_are_listed_with_filters(lb, tmp_path):
    a = _series(tmp_path / "a", 2, "LIST-A")
    b = _series(tmp_path / "b", 1, "LIST-B", sample="MR_small.dcm")
    lb.upload([tmp_path / "a", tmp_path / "b"], PROJECT)

    studies = lb.studies(PROJECT, patient_id="LIST-A")
    assert [s.study_instance_uid for s in studies] == [_uid(a[0], "StudyInstanceUID")]
    assert studies[0].patient_id == "LIST-A" and studies[0].instance_count == 2 and studies[0].series_count == 1
    assert {s.patient_id for s in lb.studies(PROJECT, PatientID="LIST-*")} == {"LIST-A", "LIST-B"}
    assert len(lb.studies(PROJECT, PatientID="LIST-*", limit=1)) == 1

    mr = lb.series(PROJECT, modality="MR", patient_id="LIST-B")
    assert [s.series_instance_uid for s in mr] == [_uid(b[0])] and mr[0].modality == "MR"
    assert mr[0].study_instance_uid == _uid(b[0], "StudyInstanceUID") and mr[0].patient_id == "LIST-B"
    of_study = lb.series(PROJECT, study=_uid(a[0], "StudyInstanceUID"))
    assert [(s.series_instance_uid, s.instance_count) for s in of_study] == [(_uid(a[0]), 2)]
    with pytest.raises(ValueError, match="Unknown filter"):
        lb.series(PROJECT, colour="red")


def test_decisions_are_recorded_and_read_back_with_the_apis_errors(lb, tmp_path):
    files = _series(tmp_path / "d", 1, "DEC-1")
    lb.upload(files, PROJECT)
    uid = _uid(files[0])
    first = lb.decide(uid, "Q?", note="motion?", present=["ghosting_motion"], absent=["lesions"])
    second = lb.decide(uid, "UN", note="repeat", location={"x": 1, "y": 2, "z": 3})
    history = lb.decisions(uid)
    assert [d.id for d in history] == [second.id, first.id]
    assert history[1].present == ["ghosting_motion"] and history[1].absent == ["lesions"]
    assert history[0].location == {"x": 1.0, "y": 2.0, "z": 3.0} and history[0].creator == "admin"
    assert history[0].created.tzinfo is not None

    with pytest.raises(BadRequest) as bad:
        lb.decide(uid, "NOPE")
    assert bad.value.status == 400 and bad.value.suberror == "unknown_decision" and "Choose one of" in bad.value.detail
    with pytest.raises(NotFound) as missing:
        lb.decisions("1.2.3.4.5.6.7.8.9")
    assert missing.value.suberror == "series_not_found"


def test_results_of_a_scored_series(lb, tmp_path):
    files = _series(tmp_path / "ai", 3, "AI-1")
    lb.upload(files, PROJECT)
    uid = _uid(files[0])
    deadline = time.monotonic() + 180
    results = lb.results(uid)
    while not results.success and time.monotonic() < deadline:
        assert "under process" in results.message, results.message
        time.sleep(1)
        results = lb.results(uid)
    assert results.success, results.message
    assert results.model_name == "lightbox-quality" and results.scores and results.triage_status in ("Routine", "Critical")
    assert all(0 <= v <= 1 for v in results.scores.values()), results.scores
    heatmap = lb.file(results.files["heatmap"][0])
    assert heatmap[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(NotFound):
        lb.results("1.2.3.999")


def test_export_as_bytes_or_a_file_then_import_an_edited_copy(lb, tmp_path):
    files = _series(tmp_path / "x", 2, "EXP-1")
    lb.upload(files, PROJECT)
    uid = _uid(files[0])
    doc = json.loads(lb.export(PROJECT, "json"))
    scans = {s: scan for e in doc["projects"][PROJECT]["experiments"].values() for s, scan in e["scans"].items()}
    assert uid in scans and len(scans[uid]["frames"]) == 2

    (tmp_path / "out").mkdir()
    written = lb.export(PROJECT, "csv", to=tmp_path / "out")  # a folder: the server's file name
    assert written == tmp_path / "out" / f"{PROJECT}.csv" and written.read_text().startswith("project_name")
    run = lb.runs(PROJECT)[0]
    assert run.kind == "export" and run.state == "done" and run.download_url.endswith(f"/runs/{run.id}/file")
    # With S3 storage the file comes straight from the store (presigned), without the server in between;
    # when that URL fails (expired, store unreachable from here) it comes through the server instead.
    assert (run.direct_url is not None) == (os.environ.get("LIGHTBOX_TEST_STORAGE") == "s3")
    if run.direct_url:
        assert lb.run_file(replace(run, download_url="/no-such-route")) == written.read_bytes()
        assert lb.run_file(replace(run, download_url="/no-such-route"), tmp_path / "out" / "d") == tmp_path / "out" / "d"
        (tmp_path / "direct").mkdir()
        assert lb.run_file(run, tmp_path / "direct") == tmp_path / "direct" / f"{PROJECT}.csv"
    broken = replace(run, direct_url=lb.url + "/no-such-object")
    assert lb.run_file(broken) == written.read_bytes()

    # Someone edits the export elsewhere (a decision added), the client brings it back.
    scans[uid]["decisions"].append({"decision": "U", "creator": "admin", "role": "", "note": "from the notebook",
                                    "created": "2026-01-02T03:04:05Z", "user_identified_artifacts": {},
                                    "location": None})
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    run = lb.import_(PROJECT, edited)
    assert run.state == "done" and run.summary["decisions_added"] == 1, run
    assert "from the notebook" in [d.note for d in lb.decisions(uid)]

    bad = tmp_path / "bad.csv"
    bad.write_text("project_name,experiment_name\nother,x\n")
    with pytest.raises(RunFailed) as failed:
        lb.import_(PROJECT, bad)
    assert failed.value.run.state == "failed" and failed.value.run.problems


def test_wrong_credentials_and_tokens_raise_unauthorized(server):
    with pytest.raises(Unauthorized) as exc:
        Client(server.url, username="admin", password="wrong")
    assert exc.value.status == 401 and exc.value.error == "not_authenticated"
    with pytest.raises(Unauthorized):
        Client(server.url, token="not-a-token").projects()
    with pytest.raises(ValueError):
        Client(server.url)


def test_send_to_a_node_when_the_server_has_the_endpoint(lb, server, tmp_path):
    paths = httpx.get(server.url + "/schema/openapi.json").json()["paths"]
    if "/api/v1/projects/{name}/send" not in paths:
        pytest.skip("this server has no POST /api/v1/projects/{p}/send yet")
    files = _series(tmp_path / "s", 1, "SEND-1")
    lb.upload(files, PROJECT)
    with pytest.raises(NotFound):  # no node of that name: the server's 404, as an exception
        lb.send(PROJECT, "no-such-node", series=[_uid(files[0])])
    with pytest.raises(ValueError):
        lb.send(PROJECT, "pacs")


# --- retries, against a small HTTP server that answers 503 and 429 ---------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    calls: list = []

    def do_GET(self):  # noqa: N802
        _Flaky.calls.append(self.path)
        if self.path == "/api/v1/users/me" and _Flaky.calls.count(self.path) <= 2:
            self._send(503, {"error": "unavailable", "suberror": "", "detail": "busy"}, {"Retry-After": "0"})
        elif self.path == "/api/v1/projects":
            self._send(429, {"error": "too_many_requests", "suberror": "throttled", "detail": "slow down"},
                       {"Retry-After": "0"})
        else:
            self._send(200, {"username": "ana"})

    def _send(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_429_and_503_are_retried_then_raised():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Flaky.calls = []
    try:
        c = Client(f"http://127.0.0.1:{httpd.server_address[1]}", token="t", retries=3, backoff=0)
        assert c.me() == {"username": "ana"}
        assert _Flaky.calls.count("/api/v1/users/me") == 3  # two 503s, then the answer
        with pytest.raises(RateLimited) as exc:
            c.projects()
        assert _Flaky.calls.count("/api/v1/projects") == 4  # the first try and three retries
        assert exc.value.status == 429 and exc.value.suberror == "throttled" and exc.value.detail == "slow down"
    finally:
        httpd.shutdown()


# --- the remote CLI ------------------------------------------------------------------------------------


def _remote_cli(tmp_path, *args, env=None):
    # A data dir with no database: were the command to run locally, it would fail.
    base = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp_path / "not-the-server")}
    base.pop("LIGHTBOX_URL", None)
    base.pop("LIGHTBOX_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_remote_cli_ingests_exports_and_imports_through_the_client(server, token, lb, tmp_path):
    files = _series(tmp_path / "cli", 2, "CLI-1")
    (tmp_path / "cli" / "readme.txt").write_text("not DICOM")
    out = _remote_cli(tmp_path, "--url", server.url, "--token", token, "ingest", str(tmp_path / "cli"),
                      "--project", PROJECT)
    assert out.returncode == 2, out.stdout + out.stderr  # a rejected file: as the local command says it
    assert out.stdout.strip().splitlines()[-1] == "2 stored, 0 already stored, 0 conflict, 1 rejected"
    assert "readme.txt: rejected:" in out.stderr
    assert [s.instance_count for s in lb.series(PROJECT, patient_id="CLI-1")] == [2]

    env = {"LIGHTBOX_URL": server.url, "LIGHTBOX_TOKEN": token}
    out = _remote_cli(tmp_path, "export", PROJECT, "--to", str(tmp_path / "mine.json"), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "mine.json")
    doc = json.loads((tmp_path / "mine.json").read_text())
    assert _uid(files[0]) in {s for e in doc["projects"][PROJECT]["experiments"].values() for s in e["scans"]}

    out = _remote_cli(tmp_path, "export", PROJECT, "--format", "csv", env=env)  # into the current folder
    assert out.returncode == 0 and (tmp_path / f"{PROJECT}.csv").is_file(), out.stdout + out.stderr

    out = _remote_cli(tmp_path, "import", PROJECT, "--from", str(tmp_path / "mine.json"), env=env)
    assert out.returncode == 0 and "Imported" in out.stdout, out.stdout + out.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text("project_name,experiment_name\nother,x\n")
    out = _remote_cli(tmp_path, "import", PROJECT, "--from", str(bad), env=env)
    assert out.returncode == 1 and "error:" in out.stderr and "row " in out.stderr, out.stdout + out.stderr

    out = _remote_cli(tmp_path, "--url", server.url, "export", PROJECT)
    assert out.returncode == 1 and "--token" in out.stderr
    out = _remote_cli(tmp_path, "--url", server.url, "--token", "wrong", "export", PROJECT)
    assert out.returncode == 1 and "token is invalid" in out.stderr, out.stderr
