"""Piccolo tables: the persistent shape of the domain (see DESIGN.md, "Domain model")."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    BigInt,
    Boolean,
    Integer,
    Real,
    ForeignKey,
    OnDelete,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class User(Table, tablename="lb_user"):
    id: Serial
    username = Varchar(length=150, unique=True, index=True)
    email = Varchar(length=254, default="")
    password_hash = Text(default="")
    is_admin = Boolean(default=False)
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    last_login = Timestamptz(null=True, default=None)
    notify = Varchar(length=16, default="immediate")  # flags and alerts by mail: immediate | digest
    approval = Varchar(length=16, default="")  # self sign-up: "" (not signed up) | pending | approved | rejected


class ApiToken(Table, tablename="lb_api_token"):
    """An API token; only its SHA-256 is stored, the key is shown once when issued."""

    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    key_hash = Varchar(length=64, unique=True, index=True)
    prefix = Varchar(length=8)
    name = Varchar(length=100, default="")
    created_at = Timestamptz()
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class UserSession(Table, tablename="lb_user_session"):
    """A signed-in browser. The session cookie carries its key; ending the row signs that browser out
    (logout, a password reset or change), whatever the cookie still says."""

    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    key_hash = Varchar(length=64, unique=True, index=True)  # SHA-256 of the key in the cookie
    client = Varchar(length=64, default="")
    user_agent = Varchar(length=200, default="")
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    ended_at = Timestamptz(null=True, default=None)


class Project(Table, tablename="lb_project"):
    id: Serial
    name = Varchar(length=64, unique=True, index=True)
    description = Text(default="")
    settings = JSON(default="{}")
    created_at = Timestamptz()


class Archive(Table, tablename="lb_archive"):
    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=64)
    created_at = Timestamptz()


class Membership(Table, tablename="lb_membership"):
    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    role = Varchar(length=32)
    created_at = Timestamptz()


class AuditEvent(Table, tablename="lb_audit_event"):
    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    username = Varchar(length=150, default="", index=True)
    action = Varchar(length=64, index=True)
    object = Text(default="")
    detail = JSON(default="{}")
    client = Varchar(length=64, default="")
    created_at = Timestamptz(index=True)


# The image hierarchy. Each row carries a `key` unique within the database ("{project id}:{UID}",
# or "{archive id}:{PatientID}" for patients): concurrent ingests of one series upsert on it with
# ON CONFLICT, which works the same on SQLite and PostgreSQL.
# Composite indexes for the pages (Piccolo declares single columns only) are made by migration
# portal_2026_12_03t07_12_00_000000: lb_study (project, study_date, id), (project, updated_at, id) and
# (project, description, id); lb_patient (project, patient_id) and (project, patient_name);
# lb_series (study, review_status, series_number), (project, study, review_status, ai_score),
# (project, review_status), (project, modality); lb_decision (project, series, created_at, id) and
# (project, username, role, series).


class Patient(Table, tablename="lb_patient"):
    id: Serial
    key = Varchar(length=200, unique=True)  # the unique constraint is its index
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    archive = ForeignKey(Archive, on_delete=OnDelete.cascade, index=True)
    patient_id = Varchar(length=64, index=True)
    patient_name = Varchar(length=324, default="")
    birth_date = Varchar(length=8, default="")
    sex = Varchar(length=16, default="")
    created_at = Timestamptz()


class Study(Table, tablename="lb_study"):
    id: Serial
    key = Varchar(length=100, unique=True)
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    study_instance_uid = Varchar(length=64, index=True)
    study_date = Varchar(length=8, default="", index=True)
    study_time = Varchar(length=16, default="")
    description = Varchar(length=256, default="")
    referring_physician = Varchar(length=324, default="")
    institution = Varchar(length=256, default="")
    accession_number = Varchar(length=64, default="", index=True)
    study_id = Varchar(length=64, default="")
    modalities = Varchar(length=100, default="")
    created_at = Timestamptz()
    updated_at = Timestamptz()
    # The study's summary of its series, kept current by triggers on lb_series (migration 2026-12-03T11:31):
    # the studies table filters and sorts by these, indexed, instead of aggregating series.
    n_series = Integer(default=0)
    n_unreviewed = Integer(default=0)
    n_senior = Integer(default=0)  # series needing senior review
    review_status = Varchar(length=32, default="complete")  # unreviewed if any is, else needs_senior_review if any
    ai_min = Real(null=True, default=None)  # the worst (lowest) AI score of its series


class Series(Table, tablename="lb_series"):
    id: Serial
    key = Varchar(length=100, unique=True)
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    study = ForeignKey(Study, on_delete=OnDelete.cascade, index=True)
    series_instance_uid = Varchar(length=64, index=True)
    series_number = Integer(null=True, default=None)
    series_date = Varchar(length=8, default="")
    series_time = Varchar(length=16, default="")
    modality = Varchar(length=16, default="", index=True)
    body_part = Varchar(length=64, default="")
    description = Varchar(length=256, default="")
    manufacturer = Varchar(length=128, default="")
    model_name = Varchar(length=128, default="")
    sop_class_uid = Varchar(length=64, default="")
    review_status = Varchar(length=32, default="unreviewed", index=True)
    ai_summary = Text(default="")
    ai_score = Real(null=True, default=None, index=True)  # the headline score (built-in model: quality 0-1)
    ai_status = Varchar(length=32, default="", index=True)  # "" | queued | running | done | failed | not_applicable
    last_instance_at = Timestamptz()
    created_at = Timestamptz()
    # Kept by triggers from its decisions: how many people decided it (agreement reads only those decided by
    # more than one), and its latest decision's code and "code|artifacts" (the dashboard's and AI page's tallies).
    n_readers = Integer(default=0)
    decision_code = Varchar(length=16, null=True, default=None)
    decision_label = Text(null=True, default=None)


class Tally(Table, tablename="lb_tally"):
    """A project's counter kept current by triggers (migration 2026-12-03T11:31): the dashboard and the AI
    page read these instead of counting series and decisions. `name` says what is counted, `key` of what."""

    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade)
    name = Varchar(length=32, default="")  # status | decision | label | reviewer | reviewer_series | day
    key = Text(default="")
    n = Integer(default=0)


class Instance(Table, tablename="lb_instance"):
    id: Serial
    key = Varchar(length=100, unique=True)
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    sop_instance_uid = Varchar(length=64, index=True)
    sop_class_uid = Varchar(length=64, default="")
    instance_number = Integer(null=True, default=None)
    transfer_syntax_uid = Varchar(length=64, default="")
    rows = Integer(default=0)
    columns = Integer(default=0)
    frames = Integer(default=1)
    file_key = Varchar(length=200)
    size = BigInt(default=0)
    md5 = Varchar(length=32)
    created_at = Timestamptz()



class VolumeSource(Table, tablename="lb_volume_source"):
    """A volume file (NIfTI, MGZ, NRRD) that became a series' DICOM images, with MIQA's names for it: exports
    give MIQA back this file under these names. One row per version; a changed file makes a new current one."""

    id: Serial
    key = Varchar(length=100, unique=True)  # project, experiment, scan, frame and MD5 (portal/archive/volumes.py)
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    experiment = Varchar(length=256)
    scan = Varchar(length=256)
    frame_number = Integer(default=0)
    scan_type = Varchar(length=64, default="", index=True)
    file_location = Text(default="")  # where it came from: the import file's path, or the uploaded name
    file_key = Varchar(length=200)  # the stored copy of the volume itself
    md5 = Varchar(length=32)
    size = BigInt(default=0)
    format = Varchar(length=16, default="")
    notes = Text(default="")  # the experiment's notes
    subject_id = Varchar(length=64, default="")
    session_id = Varchar(length=64, default="")
    scan_link = Text(default="")
    slices = Integer(default=0)
    current = Boolean(default=True)
    created_at = Timestamptz()


class InstanceMetadata(Table, tablename="lb_instance_metadata"):
    """An instance's DICOM JSON without bulk data, kept at ingest so WADO-RS /metadata never re-reads files.

    Bulk values carry the placeholder URI "lightbox-bulk:<tag>"; the answer puts the request's own URL there."""

    id: Serial
    instance = ForeignKey(Instance, on_delete=OnDelete.cascade, unique=True)
    dicom_json = Text(default="{}")

# Review: decisions are append-only; the history is the record.


class Decision(Table, tablename="lb_decision"):
    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    user = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    username = Varchar(length=150, default="")
    role = Varchar(length=32, default="")  # the maker's role then: "made by a senior reviewer" stays true
    code = Varchar(length=16)
    note = Text(default="")
    artifacts = JSON(default="{}")  # {artifact: 1 present | 0 absent | -1 undecided}
    location = JSON(default="{}")  # {"x", "y", "z"} in patient mm, or {} when none was marked
    created_at = Timestamptz(index=True)


# Report forms: a definition is immutable once saved; editing saves the next version.


class FormDefinition(Table, tablename="lb_form_definition"):
    id: Serial
    key = Varchar(length=120, unique=True, index=True)  # "{name}:{version}"
    name = Varchar(length=100, index=True)
    version = Integer(default=1)
    title = Varchar(length=200, default="")
    description = Text(default="")
    fields = JSON(default="[]")
    created_by = Varchar(length=150, default="")
    created_at = Timestamptz()


class ProjectForm(Table, tablename="lb_project_form"):
    """Which forms (by name, newest version) a project's series pages show, in order."""

    id: Serial
    key = Varchar(length=200, unique=True, index=True)  # "{project id}:{form name}"
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    form_name = Varchar(length=100)
    position = Integer(default=0)


class FormOwner(Table, tablename="lb_form_owner"):
    """The project a report form belongs to (set when it is first saved). Only that project, projects it has
    been assigned to, and managers of the owner may use it; built-in and `shared` forms are everyone's."""

    id: Serial
    name = Varchar(length=100, unique=True, index=True)
    project = ForeignKey(Project, on_delete=OnDelete.set_null, null=True, default=None, index=True)
    shared = Boolean(default=False)  # an administrator made it available to every project


class FormSubmission(Table, tablename="lb_form_submission"):
    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    form = ForeignKey(FormDefinition, on_delete=OnDelete.restrict, index=True)  # the exact version used
    user = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    username = Varchar(length=150, default="")
    user_email = Varchar(length=254, default="")
    entry = JSON(default="{}")
    entry_formatted = Text(default="")
    created_at = Timestamptz(index=True)


# AI: one job per (series, model version) run; results and assets belong to the job that made them.


class InferenceJob(Table, tablename="lb_inference_job"):
    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    model_name = Varchar(length=100, default="")
    model_version = Varchar(length=40, default="")
    state = Varchar(length=16, default="queued", index=True)  # queued running retrying done failed not_applicable
    attempts = Integer(default=0)
    error = Text(default="")
    queued_at = Timestamptz()
    started_at = Timestamptz(null=True, default=None)
    heartbeat_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    worker = Varchar(length=100, default="")  # host:pid:start of the process running it (restart recovery)


class Result(Table, tablename="lb_result"):
    id: Serial
    job = ForeignKey(InferenceJob, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=100)
    algorithm = Varchar(length=100, default="")
    value = Real(null=True, default=None)
    text = Text(default="")
    type = Varchar(length=16, default="float")  # float | probability | string
    model_name = Varchar(length=100, default="")
    model_version = Varchar(length=40, default="")
    created_at = Timestamptz()


class Asset(Table, tablename="lb_asset"):
    id: Serial
    job = ForeignKey(InferenceJob, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=32)  # heatmap | json | report
    media_type = Varchar(length=100)
    file_key = Varchar(length=200)
    created_at = Timestamptz()


class AiAlert(Table, tablename="lb_ai_alert"):
    """A critical result, once per series and model version; the mail issue delivers it."""

    id: Serial
    key = Varchar(length=200, unique=True, index=True)  # "{series id}:{model}:{version}"
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    model_name = Varchar(length=100)
    model_version = Varchar(length=40)
    output = Varchar(length=100)
    value = Real(null=True, default=None)
    message = Text(default="")
    created_at = Timestamptz()
    delivered_at = Timestamptz(null=True, default=None)


class RetrainRun(Table, tablename="lb_retrain_run"):
    """Fine-tuning a model on one project's reviewer labels: its state and the before/after comparison."""

    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    model_name = Varchar(length=100)
    base_version = Varchar(length=40, default="")
    new_version = Varchar(length=40, default="")
    state = Varchar(length=16, default="queued", index=True)  # queued running done failed
    registered = Boolean(default=False)  # the new version was better and serves the project now
    comparison = JSON(default="{}")  # portal.ai.finetune's outcome: AUC per output before and after
    progress = Varchar(length=200, default="")
    error = Text(default="")
    requested_by = Varchar(length=150, default="")
    created_at = Timestamptz()
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)


# Import/export: one row per export, import or scheduled sync run; the sync history page lists them.


class SyncRun(Table, tablename="lb_sync_run"):
    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=16)  # export | import | sync
    trigger = Varchar(length=16, default="")  # portal | api | cli | schedule
    state = Varchar(length=16, default="queued", index=True)  # queued running done failed
    format = Varchar(length=8, default="")  # json | csv (detected on import)
    path = Text(default="")
    options = JSON(default="{}")  # {"deidentify": bool, "remap_uids": bool, ...}
    username = Varchar(length=150, default="")
    phase = Varchar(length=32, default="")
    done = Integer(default=0)
    total = Integer(default=0)
    summary = JSON(default="{}")  # counts: frames, new frames, decisions added, ...
    problems = JSON(default="[]")  # [{"row", "field", "problem"}] when the file was refused
    message = Text(default="")
    queued_at = Timestamptz(index=True)
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    worker = Varchar(length=100, default="")  # host:pid:start of the process running it (restart recovery)


# Mail and collaboration: every message goes through the outbox; flags and notifications point at series.


class EmailOutbox(Table, tablename="lb_email_outbox"):
    """One message: written before delivery is attempted, so an SMTP outage loses nothing."""

    id: Serial
    kind = Varchar(length=32, default="")  # flag | alert | signup | approval | digest | api
    sender = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    sender_name = Varchar(length=150, default="")
    reply_to = Varchar(length=254, default="")
    recipients = JSON(default="[]")  # To addresses
    cc = JSON(default="[]")
    subject = Varchar(length=300, default="")
    body = Text(default="")
    html = Text(default="")
    attachments = JSON(default="[]")  # [{"filename", "media_type", "file_key", "cid"}] stored in the file store
    object = Text(default="")  # what it is about, as audit objects name it
    state = Varchar(length=16, default="pending", index=True)  # pending | sent | failed
    attempts = Integer(default=0)
    last_error = Text(default="")
    transport = Varchar(length=16, default="")  # smtp | log (no SMTP configured)
    next_attempt_at = Timestamptz(index=True)
    created_at = Timestamptz(index=True)
    sent_at = Timestamptz(null=True, default=None)


class Flag(Table, tablename="lb_flag"):
    """A series flagged for discussion: who raised it, with whom, and why."""

    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    user = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    username = Varchar(length=150, default="")
    recipients = JSON(default="[]")
    cc = JSON(default="[]")
    subject = Varchar(length=300, default="")
    note = Text(default="")
    outbox = ForeignKey(EmailOutbox, on_delete=OnDelete.set_null, null=True, default=None)
    created_at = Timestamptz(index=True)


class Notification(Table, tablename="lb_notification"):
    """What the bell shows: a flag or an AI alert addressed to one user."""

    id: Serial
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=16)  # flag | alert
    project = ForeignKey(Project, on_delete=OnDelete.cascade, null=True, default=None)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, null=True, default=None)
    title = Varchar(length=300, default="")
    text = Text(default="")
    link = Varchar(length=500, default="")
    created_at = Timestamptz(index=True)
    read_at = Timestamptz(null=True, default=None)
    digest_due = Boolean(default=False, index=True)  # waiting for this user's daily digest


class SiteSetting(Table, tablename="lb_site_setting"):
    """Site-wide settings an admin changes in the portal (e.g. self sign-up), one row per key."""

    id: Serial
    key = Varchar(length=64, unique=True, index=True)
    value = JSON(default="null")
    updated_at = Timestamptz()


# DICOM networking: remote nodes the site sends to (C-STORE or DICOMweb STOW) and C-MOVE destinations.


class Node(Table, tablename="lb_node"):
    """A remote DICOM application entity; with a DICOMweb URL, sending goes through STOW-RS instead."""

    id: Serial
    name = Varchar(length=64, unique=True, index=True)
    ae_title = Varchar(length=16, default="", index=True)
    host = Varchar(length=255, default="")
    port = Integer(default=104)
    dicomweb_url = Text(default="")  # e.g. http://pacs:8042/dicom-web; empty: DIMSE only
    description = Text(default="")
    created_at = Timestamptz()


class SendJob(Table, tablename="lb_send_job"):
    """Sending series of one project to a node: its progress, attempts and outcome (the job history)."""

    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    node = ForeignKey(Node, on_delete=OnDelete.set_null, null=True, default=None)
    node_name = Varchar(length=64, default="")
    via = Varchar(length=16, default="dimse")  # dimse | dicomweb
    series = JSON(default="[]")  # SeriesInstanceUIDs
    state = Varchar(length=16, default="queued", index=True)  # queued running retrying done failed
    attempts = Integer(default=0)
    total = Integer(default=0)
    sent = Integer(default=0)
    failed = Integer(default=0)
    error = Text(default="")
    username = Varchar(length=150, default="")
    queued_at = Timestamptz(index=True)
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)


class ReviewClaim(Table, tablename="lb_review_claim"):
    """Who is reviewing a series right now (review/claims.py): one row per series, until it expires."""

    id: Serial
    project = ForeignKey(Project, on_delete=OnDelete.cascade, index=True)
    series = ForeignKey(Series, on_delete=OnDelete.cascade, unique=True, index=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    username = Varchar(length=150, default="")
    claimed_at = Timestamptz()
    expires_at = Timestamptz(index=True)


TABLES: list[type[Table]] = [User, ApiToken, Project, Archive, Membership, AuditEvent,
                             Patient, Study, Series, Instance, InstanceMetadata, Decision, FormDefinition, ProjectForm,
                             FormSubmission, InferenceJob, Result, Asset, AiAlert, RetrainRun,
                             EmailOutbox, Flag, Notification, SiteSetting, SyncRun, Node, SendJob,
                             ReviewClaim, UserSession, FormOwner, Tally, VolumeSource]
