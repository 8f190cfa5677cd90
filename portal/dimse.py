"""DICOM SCP: C-STORE receiver (each instance goes through ingest), C-ECHO, and query/retrieve (portal/network/qr)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification

from portal import audit, projects
from portal.archive import ingest
from portal.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from portal.errors import Invalid
from portal.network import qr
from portal.tables import Archive, Project

log = logging.getLogger("lightbox.dimse")

DEFAULT_AE_TITLE = "LIGHTBOX"

# Written into every received file's meta and never changed: a re-sent instance must produce the
# same bytes (hence the same MD5) to be "already stored" rather than a conflict.

# C-STORE response statuses (PS3.4 B.2.3 for storage, PS3.7 C for the general ones).
SUCCESS = 0x0000  # stored, or already stored with the same bytes
OUT_OF_RESOURCES = 0xA700  # Refused: we could not store it now (disk, database); the sender may retry later
DOES_NOT_MATCH = 0xA900  # Error: the dataset's SOP Class/Instance UID is not the one the command announced
CANNOT_UNDERSTAND = 0xC000  # Error: ingest rejected the dataset (unreadable, UIDs missing, project policy)
DUPLICATE_SOP_INSTANCE = 0x0111  # Failure: this SOP Instance UID is stored with other content; ours is kept

# Waiting longer than this for ingest means something is stuck; the sender gets OUT_OF_RESOURCES.
INGEST_TIMEOUT_S = 300
# On shutdown, associations still sending get this long to finish before they are aborted.
STOP_TIMEOUT_S = 30
# Looking up the called project while the peer waits for our answer: under its ACSE timeout (30 s in dcmtk and
# pynetdicom), so that a stalled database gives it a transient reject and us a log line, not a silent abort.
REQUEST_LOOKUP_S = 15


@dataclass
class _Association:
    """What one association is sending, where it goes, and how it went."""

    project: Project
    calling_ae: str
    called_ae: str
    client: str
    archive: Archive | None = None  # resolved once per association
    counts: Counter = field(default_factory=Counter)
    busy: int = 0  # C-STORE handlers still running (an abort may close the connection meanwhile)
    closed: bool = False


async def project_for_ae_title(called_ae: str, default: str | None = None) -> Project | None:
    """The project a called AE title addresses: one listing it in `ae_titles`, else the project of that
    name (both case-insensitive: AE titles are usually upper case), else the project named `default`."""
    title = called_ae.strip().upper()
    every = await Project.objects().order_by(Project.id)
    for p in every:
        if title in {str(t).strip().upper() for t in projects.settings_of(p)["ae_titles"]}:
            return p
    for p in every:
        if p.name.upper() == title:
            return p
    return next((p for p in every if p.name == default), None)


_AE_TITLE = re.compile(r"^[ -~]{1,16}$")


def check_ae_titles(text: str, what: str) -> list[str]:
    """A comma- or line-separated list of AE titles, upper-cased; Invalid naming a bad one."""
    titles = []
    for raw in re.split(r"[,\n]", text or ""):
        title = raw.strip().upper()
        if not title:
            continue
        if not _AE_TITLE.match(title) or "\\" in title:
            raise Invalid(f"{what}: '{raw.strip()}' is not an AE title (1-16 printable characters, no backslash).",
                          "invalid_ae_title")
        if title not in titles:
            titles.append(title)
    return titles


def caller_allowed(project: Project, calling_ae: str) -> bool:
    """Whether the project accepts C-STORE from this calling AE title (its `ae_callers`; empty: anyone)."""
    allowed = {str(t).strip().upper() for t in projects.settings_of(project)["ae_callers"]}
    return not allowed or calling_ae.strip().upper() in allowed


def _file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, DICM and the file meta of a received dataset, encoded."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    buf = DicomBytesIO()
    write_file_meta_info(buf, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + buf.getvalue()


def _response(status: int, comment: str = "") -> int | Dataset:
    """A status, with an Error Comment (LO: 64 ASCII characters, no backslash) the sender's log will show."""
    if not comment:
        return status
    ds = Dataset()
    ds.Status = status
    text = comment.encode("ascii", "replace").decode().replace("\\", "/")
    ds.ErrorComment = "".join(c for c in text if c.isprintable())[:64].strip()
    return ds


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it has received before every read.

    Senders that leave Nagle's algorithm on (dcmtk's storescu does unless TCP_NODELAY=1 is in its
    environment) hold back the rest of a message until its start is acknowledged, and Linux delays
    that acknowledgement by up to 40 ms: 3 to 4 times fewer images a second without this.
    """

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return super().recv(bufsize, flags)


class Receiver:
    """A C-STORE SCP on host:port; each instance is ingested on the event loop that started it.

    The web app's loop is used (not a private one) because the PostgreSQL connection pool belongs to it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 11112, *, default_project: str | None = None,
                 ae_title: str = DEFAULT_AE_TITLE):
        self.host = host
        self.port = port
        self.default_project = default_project
        self.ae_title = ae_title
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._associations: dict = {}
        self._lock = threading.Lock()

    # -- lifecycle (called on the event loop) -------------------------------------------------

    def start(self) -> None:
        """Listen for associations in pynetdicom's threads; call from code running on the event loop."""
        self._loop = asyncio.get_running_loop()
        pn_log = logging.getLogger("pynetdicom")
        if pn_log.level == logging.NOTSET:
            # pynetdicom logs every PDU and request at INFO; our own lines say what matters.
            pn_log.setLevel(logging.WARNING)
        # Accept every storage SOP class (standard, private, or newer than pynetdicom) in the transfer
        # syntax the sender proposes first, so that what it has is stored as it is, never converted.
        # A process-wide pynetdicom setting; it only concerns acceptors, and this is the only one.
        _config.UNRESTRICTED_STORAGE_SERVICE = True
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)  # C-ECHO
        for model in (*qr.FIND_MODELS, *qr.MOVE_MODELS, *qr.GET_MODELS):  # query/retrieve (portal/network/qr.py)
            ae.add_supported_context(model)
        # Bigger PDUs than the 16 KB default: fewer round trips per image.
        ae.maximum_pdu_size = 1 << 20
        handlers = [(evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_CLOSE, self._on_close),
                    (evt.EVT_C_FIND, self._query(qr.handle_find)), (evt.EVT_C_MOVE, self._query(qr.handle_move)),
                    (evt.EVT_C_GET, self._query(qr.handle_get))]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self.port = self._server.server_address[1]
        log.info("DICOM C-STORE receiver %s listening on %s:%d (default project: %s)", self.ae_title,
                 self.host, self.port, self.default_project or "none")

    async def stop(self) -> None:
        """Stop accepting, give running associations STOP_TIMEOUT_S to finish, then abort them."""
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)  # waits for the accept loop to notice
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT_S
        # Running associations still need this loop for ingest: wait without blocking it.
        while server.active_associations and loop.time() < deadline:
            await asyncio.sleep(0.1)
        for assoc in server.active_associations:
            await asyncio.to_thread(assoc.abort)
        # An aborted association may still be ingesting its last instance: let that finish first.
        while self._busy() and loop.time() < deadline + 10:
            await asyncio.sleep(0.05)
        log.info("DICOM C-STORE receiver stopped")

    def _busy(self) -> bool:
        with self._lock:
            return any(a.busy for a in self._associations.values())

    @asynccontextmanager
    async def serving(self, _app=None):
        """start() ... stop() around the block; usable as a Litestar lifespan (it passes the app)."""
        self.start()
        try:
            yield self
        finally:
            await self.stop()

    # -- pynetdicom event handlers (called in pynetdicom's threads) ------------------------------

    def _run(self, coro, timeout: float):
        """Run a coroutine on the app's event loop from a pynetdicom thread and wait for its result."""
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed: the server is going away
            coro.close()
            raise
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def _on_open(self, event) -> None:
        wrapper = event.assoc.dul.socket
        raw = wrapper.socket
        # Our small C-STORE responses go out at once instead of waiting for the peer's delayed ACK.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_QUICKACK"):  # Linux
            timeout = raw.gettimeout()
            wrapper.socket = _QuickAckSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
            wrapper.socket.settimeout(timeout)

    def _on_requested(self, event) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        called, calling = rq.called_ae_title.strip(), rq.calling_ae_title.strip()
        client = str(assoc.requestor.address)
        try:
            project = self._run(project_for_ae_title(called, self.default_project), REQUEST_LOOKUP_S)
        except Exception:
            log.exception("DICOM association from %s (%s): could not look up the project", calling, client)
            project, reject = None, (0x02, 0x01, 0x01)  # transient, service user, no reason given
        else:
            reject = (0x01, 0x01, 0x07)  # permanent, service user, called AE title not recognised
        if project is not None and not caller_allowed(project, calling):
            log.warning("DICOM association from %s (%s) to %s rejected: project %s does not list this calling "
                        "AE title in its ae_callers setting", calling, client, called, project.name)
            try:
                self._run(audit.record("dicom_association_rejected", username=calling, object=f"project:{project.name}",
                                       detail={"calling_ae": calling, "called_ae": called,
                                               "reason": "calling AE title not allowed"}, client=client), 30)
            except Exception:
                log.exception("could not audit a rejected DICOM association")
            assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
            assoc.kill()
            return
        if project is None:
            log.warning("DICOM association from %s (%s) rejected: no project for called AE title %r "
                        "(list it in a project's ae_titles setting, or serve with --dicom-default-project)",
                        calling, client, called)
            assoc.acse.send_reject(*reject)
            assoc.kill()  # as pynetdicom does for its own rejections: waits for the peer to hang up
            return
        with self._lock:
            self._associations[assoc] = _Association(project, calling, called, client)
        try:
            self._associations[assoc].archive = self._run(projects.archive(project, None), REQUEST_LOOKUP_S)
        except Exception:  # ingest looks it up itself then
            log.exception("could not look up the default archive of project %s", project.name)
        log.debug("DICOM association from %s (%s) to %s: project %s", calling, client, called, project.name)

    def _query(self, handle):
        """A C-FIND/C-MOVE/C-GET handler bound to the association's project (see portal/network/qr.py)."""

        def on_event(event):
            with self._lock:
                session = self._associations[event.assoc]
            return handle(event, session.project, self._run)

        return on_event

    def _on_store(self, event) -> int | Dataset:
        with self._lock:
            session = self._associations.get(event.assoc)
            if session is not None:
                session.busy += 1
        if session is None:  # cannot happen: unknown callers are rejected before any C-STORE
            return _response(OUT_OF_RESOURCES, "Association not registered; please retry.")
        outcome = "failed"
        try:
            status, outcome, comment = self._store(session, event)
            return _response(status, comment)
        finally:
            with self._lock:
                session.counts[outcome] += 1
                session.busy -= 1
                done = session.closed and session.busy == 0
            if done:
                self._finish(event.assoc, session)

    def _store(self, session: _Association, event) -> tuple[int, str, str]:
        """Ingest the dataset as a Part-10 file, from memory; (status, outcome, error comment)."""
        req = event.request
        sop_class, sop_instance = str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID)
        # The dataset exactly as the sender encoded it: nothing is decoded or re-encoded. Read once, here
        # in the association's thread; the bytes are written straight to their place by the writer.
        data = _file_meta(sop_class, sop_instance, event.context.transfer_syntax) + bytes(req.DataSet.getbuffer())
        read = ingest.prepare(data=data)
        mismatch = _mismatch(read, sop_class, sop_instance)
        if mismatch:
            log.debug("C-STORE %s from %s: %s", sop_instance, session.calling_ae, mismatch)
            return DOES_NOT_MATCH, "rejected", mismatch
        items = [(read, None, f"{sop_instance}.dcm")]
        try:
            # The file placed and (SQLite) its row committed here, in the association's thread; the loop only
            # answers (one hop there and back, where the file and the row each took one more).
            planned = ingest.place_prepared(items, session.project, session.archive)
            (result,) = self._run(ingest.answer_prepared(items, planned, session.project, session.archive),
                                  INGEST_TIMEOUT_S)
        except Exception:
            log.exception("C-STORE %s from %s: ingest failed", sop_instance, session.calling_ae)
            return OUT_OF_RESOURCES, "failed", "The server could not store the instance; try again later."
        log.debug("C-STORE %s from %s into %s: %s %s", sop_instance, session.calling_ae, session.project.name,
                  result.status, result.reason)
        if result.ok:
            return SUCCESS, result.status, ""
        if result.status == ingest.CONFLICT:
            return DUPLICATE_SOP_INSTANCE, result.status, "SOP Instance UID already stored with other content"
        return CANNOT_UNDERSTAND, result.status, result.reason

    def _on_close(self, event) -> None:
        with self._lock:
            session = self._associations.get(event.assoc)
            if session is None or session.closed:
                return
            session.closed = True
            done = session.busy == 0
        # Otherwise the last C-STORE still running (after an abort) finishes the association.
        if done:
            self._finish(event.assoc, session)

    def _finish(self, assoc, session: _Association) -> None:
        """Log the association and record its audit event (only when it sent instances)."""
        with self._lock:
            self._associations.pop(assoc, None)
        counts = {k: session.counts[k] for k in
                  (ingest.STORED, ingest.ALREADY_STORED, ingest.CONFLICT, ingest.REJECTED, "failed")}
        sent = sum(counts.values())
        level = logging.INFO if sent else logging.DEBUG
        log.log(level, "DICOM association from %s (%s) to %s, project %s: %d instance(s): %s", session.calling_ae,
                session.client, session.called_ae, session.project.name, sent,
                ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n) or "C-ECHO only")
        if not sent:
            return
        try:
            self._run(audit.record(
                "dicom_received", object=f"project:{session.project.name}/archive:{projects.DEFAULT_ARCHIVE}",
                detail={"calling_ae": session.calling_ae, "called_ae": session.called_ae, **counts},
                client=session.client), 30)
        except Exception:
            log.exception("could not record the audit event of a DICOM association from %s", session.calling_ae)


def _mismatch(read, sop_class: str, sop_instance: str) -> str:
    """Why the dataset disagrees with its C-STORE command, or ''; unreadable files are left to ingest."""
    if not isinstance(read, ingest.ReadFile):
        return ""
    if read.parsed.sop_class_uid != sop_class:
        return "SOP Class UID in the dataset differs from the command's"
    if read.parsed.sop_instance_uid != sop_instance:
        return "SOP Instance UID in the dataset differs from the command's"
    return ""
