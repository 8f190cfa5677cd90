"""The client: one `httpx.Client` with the account's token, retries on 429/503, and one method per task."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union
from urllib.parse import quote

import httpx

from lightbox_client import _qido
from lightbox_client.errors import ApiError, BadRequest, LightboxError, RunFailed, Timeout, error_for
from lightbox_client.models import Decision, Project, Results, Run, SendJob, Series, Study, UploadResult

__all__ = ["Client"]

PathLike = Union[str, os.PathLike]
RETRY_STATUSES = (429, 503)
QIDO_PAGE = 1000  # the most results the server returns for one QIDO-RS request


def _q(segment: str) -> str:
    return quote(segment, safe="")


class Client:
    """A Lightbox server for one account.

    `Client(url, token=KEY)`, or `Client(url, username=…, password=…)` (exchanged once for a token through
    `POST /api-token-auth/`). 429 and 503 answers are retried `retries` times, waiting as `Retry-After` says
    or `backoff` seconds doubling each time; other errors raise `ApiError` subclasses at once."""

    def __init__(self, url: str, token: Optional[str] = None, *, username: Optional[str] = None,
                 password: Optional[str] = None, timeout: float = 120.0, retries: int = 4, backoff: float = 0.5,
                 progress: bool = True, verify: Union[bool, str] = True,
                 transport: Optional[httpx.BaseTransport] = None):
        from lightbox_client import __version__

        if not url:
            raise ValueError("Give the server's address, e.g. Client('https://lightbox.example.org', token=…).")
        self.url = url.rstrip("/")
        self.retries, self.backoff, self.progress = retries, backoff, progress
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify, transport=transport,
                                  headers={"User-Agent": f"lightbox-client/{__version__}"})
        # For presigned object-store URLs: no Authorization header (the signature is the credential, and S3
        # refuses a request that carries two), no base URL.
        self._direct = httpx.Client(timeout=timeout, verify=verify,
                                    headers={"User-Agent": f"lightbox-client/{__version__}"})
        if token is None:
            if not (username and password):
                raise ValueError("Give token=… or both username=… and password=….")
            token = self._request("POST", "/api-token-auth/", json={"username": username, "password": password}
                                  ).json()["token"]
        self.token = token
        self._http.headers["Authorization"] = f"Token {token}"

    # --- plumbing ----------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()
        self._direct.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _wait_before_retry(self, response: Optional[httpx.Response], attempt: int) -> None:
        delay = self.backoff * (2 ** attempt)
        header = response.headers.get("retry-after", "") if response is not None else ""
        if header.strip().isdigit():
            delay = float(header)
        time.sleep(min(delay, 60.0))

    def _request(self, method: str, path: str, *, files: Optional[Callable[[], Any]] = None, **kw) -> httpx.Response:
        """Send, retrying 429/503 (and, for GET, a dropped connection); an error answer raises. `files` is a
        function making the multipart files anew for each attempt (an open file is read once)."""
        for attempt in range(self.retries + 1):
            opened = files() if files else None
            try:
                response = self._http.request(method, path, files=opened, **kw)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if method != "GET" or attempt >= self.retries:
                    raise
                self._wait_before_retry(None, attempt)
                continue
            finally:
                for item in (opened or []):
                    item[1][1].close()
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self._wait_before_retry(response, attempt)
                continue
            if response.is_error:
                raise error_for(response.status_code, _body(response))
            return response
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kw) -> Any:
        return self._request(method, path, **kw).json()

    def _download(self, url: str, to: Optional[Path], *, direct: bool = False,
                  name: str = "") -> Union[bytes, Path]:
        """GET a file: its bytes, or streamed into `to` (a file, or a folder for the server's file name, or
        `name`), written under a temporary name and renamed when complete. `direct`: a presigned URL of the
        object store, fetched without the account's token."""
        http = self._direct if direct else self._http
        for attempt in range(self.retries + 1):
            with http.stream("GET", url) as response:
                if response.status_code in RETRY_STATUSES and attempt < self.retries:
                    response.read()
                    self._wait_before_retry(response, attempt)
                    continue
                if response.is_error:
                    response.read()
                    raise error_for(response.status_code, _body(response))
                if to is None:
                    return response.read()
                dest = to / (name or _filename(response, url)) if to.is_dir() else to
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
                try:
                    with os.fdopen(fd, "wb") as out:
                        for chunk in response.iter_bytes(1024 * 1024):
                            out.write(chunk)
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                return dest
        raise AssertionError("unreachable")

    # --- accounts and projects ----------------------------------------------------------------------------

    def me(self) -> Dict[str, Any]:
        """The calling account."""
        return self._json("GET", "/api/v1/users/me")

    def projects(self) -> List[Project]:
        """The projects this account may see."""
        return [Project.from_api(p) for p in self._json("GET", "/api/v1/projects")]

    def project(self, name: str) -> Project:
        return Project.from_api(self._json("GET", f"/api/v1/projects/{_q(name)}"))

    # --- images -------------------------------------------------------------------------------------------

    def upload(self, paths: Union[PathLike, Sequence[PathLike]], project: str, archive: Optional[str] = None, *,
               batch_files: int = 32, batch_bytes: int = 64 * 1024 ** 2,
               progress: Optional[bool] = None) -> UploadResult:
        """Upload DICOM files, folders (recursively) and zips into a project, a few files per request, with a
        progress bar. Files the server refuses are listed in the result (`failed`), not raised."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files = _collect(paths)
        result = UploadResult(files=len(files))
        params = {"Project": project, **({"Archive": archive} if archive else {})}
        from tqdm.auto import tqdm

        with tqdm(total=sum(size for _, size in files), unit="B", unit_scale=True, unit_divisor=1024,
                  desc=f"Uploading to {project}", disable=not (self.progress if progress is None else progress)) as bar:
            for batch in _batches(files, batch_files, batch_bytes):
                def parts(batch=batch):
                    return [("file", (str(p), open(p, "rb"), "application/octet-stream")) for p, _ in batch]

                try:
                    body = self._json("POST", "/api/v1/studies", params=params, files=parts)
                except BadRequest as exc:
                    # A batch of files that are all refused is answered 400 with each file's reason.
                    if not (isinstance(exc.body, dict) and exc.body.get("failed")):
                        raise
                    body = exc.body
                failed = body.get("failed") or []
                counts = body.get("counts") or _counts_without(failed, len(batch))
                for status, n in counts.items():
                    result.counts[status] = result.counts.get(status, 0) + n
                result.failed.extend(failed)
                for uid in body.get("series_instance_uids") or []:
                    if uid not in result.series_instance_uids:
                        result.series_instance_uids.append(uid)
                bar.update(sum(size for _, size in batch))
        return result

    def studies(self, project: str, **filters) -> List[Study]:
        """Studies of a project (QIDO-RS), filtered by DICOM attributes: `patient_id="P-1"`,
        `study_date=(date(2024, 1, 1), None)`, `modality="CR"`, `PatientName="DOE*"`, `limit=10`, …"""
        limit = filters.pop("limit", None)
        query = _qido.params(filters, _qido.STUDY_ALIASES)
        query += [("includefield", ",".join(_qido.STUDY_INCLUDE))]
        return [_qido.study(i) for i in self._search(f"/dicomweb/{_q(project)}/studies", query, limit)]

    def series(self, project: str, study: Optional[str] = None, **filters) -> List[Series]:
        """Series of a project, or of one study (QIDO-RS), filtered like `studies`: `modality="CT"`, …"""
        limit = filters.pop("limit", None)
        query = _qido.params(filters, _qido.SERIES_ALIASES)
        query += [("includefield", ",".join(_qido.SERIES_INCLUDE))]
        path = f"/dicomweb/{_q(project)}" + (f"/studies/{_q(study)}" if study else "") + "/series"
        return [_qido.series(i) for i in self._search(path, query, limit)]

    def _search(self, path: str, query: list, limit: Optional[int]) -> List[dict]:
        """Every match, a page of QIDO_PAGE at a time (the server caps one answer)."""
        found: List[dict] = []
        while limit is None or len(found) < limit:
            page = min(QIDO_PAGE, limit - len(found)) if limit is not None else QIDO_PAGE
            response = self._request("GET", path, params=[*query, ("limit", str(page)), ("offset", str(len(found)))],
                                     headers={"Accept": "application/dicom+json"})
            items = response.json() if response.content else []
            found.extend(items)
            if len(items) < page:
                break
        return found

    # --- AI results and QC decisions --------------------------------------------------------------------

    def results(self, series_uid: str, project: Optional[str] = None) -> Results:
        """AI results of a series (or of the series of a SOP Instance UID); `success` is False while pending."""
        params = {"Project": project} if project else None
        return Results.from_api(series_uid, self._json("GET", f"/api/v1/results/{_q(series_uid)}", params=params))

    def compute(self, series_uid: str, project: Optional[str] = None) -> Dict[str, Any]:
        """Ask for (re)computation of a series' AI results."""
        params = {"Project": project} if project else None
        return self._json("GET", f"/api/v1/compute/{_q(series_uid)}", params=params)

    def file(self, url: str, to: Optional[PathLike] = None) -> Union[bytes, Path]:
        """A file the server links to (an AI result's `files` URL, a run's `download_url`)."""
        return self._download(url, Path(to) if to is not None else None)

    def decisions(self, series_uid: str, project: Optional[str] = None) -> List[Decision]:
        """The QC decision history of a series, newest first."""
        params = {"series": series_uid, **({"Project": project} if project else {})}
        return [Decision.from_api(d) for d in self._json("GET", "/api/v1/scan-decisions", params=params)]

    def decide(self, series_uid: str, decision: str, *, note: str = "", present: Iterable[str] = (),
               absent: Iterable[str] = (), location: Optional[Dict[str, float]] = None,
               project: Optional[str] = None) -> Decision:
        """Record a QC decision (a code of the project's vocabulary, e.g. "U"), with artifacts present/absent."""
        body: Dict[str, Any] = {"series": series_uid, "decision": decision, "note": note,
                                "artifacts": {"present": list(present), "absent": list(absent)}}
        if location is not None:
            body["location"] = location
        params = {"Project": project} if project else None
        return Decision.from_api(self._json("POST", "/api/v1/scan-decisions", json=body, params=params))

    # --- import / export ----------------------------------------------------------------------------------

    def runs(self, project: str) -> List[Run]:
        """Import/export/sync runs of a project, newest first."""
        return [Run.from_api(r) for r in self._json("GET", f"/api/v1/projects/{_q(project)}/runs")]

    def run(self, project: str, run_id: int) -> Run:
        return Run.from_api(self._json("GET", f"/api/v1/projects/{_q(project)}/runs/{int(run_id)}"))

    def wait(self, run: Run, timeout: float = 3600.0, poll: float = 0.5) -> Run:
        """Poll a run until it has finished (done or failed)."""
        deadline = time.monotonic() + timeout
        while run.active:
            if time.monotonic() > deadline:
                raise Timeout(f"{run.kind} run {run.id} of '{run.project}' is still {run.state} after {timeout:.0f} s.")
            time.sleep(poll)
            run = Run.from_api(self._json("GET", run.status_url))
        return run

    @staticmethod
    def finished(run: Run) -> Run:
        """The run if it is done; RunFailed (with the run, and an import's problems) if it failed."""
        if run.state != "done":
            raise RunFailed(run, f"{run.kind.capitalize()} run {run.id} of '{run.project}' {run.state}: {run.message}")
        return run

    def start_export(self, project: str, format: Optional[str] = None, *, deidentify: bool = False,
                     remap_uids: bool = False) -> Run:
        """Queue an export on the server; `wait` for it, then fetch `run_file(run)`."""
        body: Dict[str, Any] = {"deidentify": deidentify, "remap_uids": remap_uids}
        if format:
            body["format"] = format
        return Run.from_api(self._json("POST", f"/api/v1/projects/{_q(project)}/export", json=body)["run"])

    def export(self, project: str, format: Optional[str] = None, *, to: Optional[PathLike] = None,
               deidentify: bool = False, remap_uids: bool = False, timeout: float = 3600.0) -> Union[bytes, Path]:
        """Export a project (JSON or MIQA CSV; default: the project's format) and download the file: its bytes,
        or the local file written at `to` (a folder takes the server's file name)."""
        run = self.start_export(project, format, deidentify=deidentify, remap_uids=remap_uids)
        return self.run_file(self.finished(self.wait(run, timeout)), to)

    def run_file(self, run: Run, to: Optional[PathLike] = None) -> Union[bytes, Path]:
        """The file of a finished export run (one this account started): its bytes, or the local file written
        at `to` (a folder takes the server's file name). Straight from the object store when the server gave a
        presigned `direct_url` (S3 storage); through the server's `download_url` otherwise, or when that fails
        (expired, or the store is not reachable from here)."""
        dest = Path(to) if to is not None else None
        if run.direct_url:
            name = Path(str(run.summary.get("path") or run.path)).name
            try:
                return self._download(run.direct_url, dest, direct=True, name=name)
            except (ApiError, httpx.HTTPError):
                pass
        if not run.download_url:
            raise LightboxError(f"{run.kind.capitalize()} run {run.id} of '{run.project}' has no file to download "
                                f"(state {run.state}).")
        return self._download(run.download_url, dest)

    def import_(self, project: str, path: PathLike, *, wait: bool = True, timeout: float = 3600.0) -> Run:
        """Upload a CSV (MIQA columns) or JSON file to merge into a project. The server checks the whole file
        first: a refused file raises RunFailed whose `run.problems` lists every problem, and changes nothing."""
        path = Path(path)

        def parts():
            return [("file", (path.name, open(path, "rb"), "application/octet-stream"))]

        run = Run.from_api(self._json("POST", f"/api/v1/projects/{_q(project)}/import", files=parts)["run"])
        return self.finished(self.wait(run, timeout)) if wait else run

    # --- DICOM nodes --------------------------------------------------------------------------------------

    def send(self, project: str, node: str, *, series: Optional[Sequence[str]] = None, study: Optional[str] = None,
             wait: bool = False, timeout: float = 3600.0, poll: float = 1.0) -> SendJob:
        """Send series (or a whole study) of a project to a DICOM node the server knows (`POST
        /api/v1/projects/{p}/send`); with `wait`, until the job has finished (RunFailed when it failed)."""
        if bool(series) == bool(study):
            raise ValueError("Give series=[SeriesInstanceUID, …] or study=StudyInstanceUID.")
        body: Dict[str, Any] = {"node": node, **({"series": list(series)} if series else {"study": study})}
        job = SendJob.from_api(self._json("POST", f"/api/v1/projects/{_q(project)}/send", json=body))
        deadline = time.monotonic() + timeout
        while wait and job.active:
            if time.monotonic() > deadline:
                raise Timeout(f"Send job {job.id} is still {job.state} after {timeout:.0f} s.")
            time.sleep(poll)
            job = SendJob.from_api(self._json("GET", job.status_url))
        if wait and job.state == "failed":
            raise RunFailed(job, f"Sending to '{node}' failed: {job.error}")
        return job


def _body(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return response.text


def _filename(response: httpx.Response, url: str) -> str:
    header = response.headers.get("content-disposition", "")
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value.strip('"'):
            return Path(value.strip('"')).name
    return url.rstrip("/").rsplit("/", 1)[-1] or "download"


def _collect(paths: Iterable[PathLike]) -> List[tuple]:
    """(file, size) for every file named or inside a named folder; zips go as they are (the server expands them)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend((f, f.stat().st_size) for f in sorted(p.rglob("*")) if f.is_file())
        elif p.is_file():
            out.append((p, p.stat().st_size))
        else:
            raise FileNotFoundError(f"No such file or folder: {p}")
    return out


def _batches(files: List[tuple], max_files: int, max_bytes: int):
    batch, size = [], 0
    for f in files:
        if batch and (len(batch) >= max_files or size + f[1] > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += f[1]
    if batch:
        yield batch


def _counts_without(failed: list, sent: int) -> Dict[str, int]:
    """Counts from a server that does not send them: the refused files by status, the rest as stored."""
    counts: Dict[str, int] = {}
    for f in failed:
        counts[f.get("status") or "rejected"] = counts.get(f.get("status") or "rejected", 0) + 1
    if sent > len(failed):
        counts["stored"] = sent - len(failed)
    return counts
