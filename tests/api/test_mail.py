"""Mail on a real queue and a real SMTP server (aiosmtpd on loopback): flag a case, recipients checked,
delivery through an outage, AI alerts once, sign-up with approval, the outbox and audit pages."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import email.policy
import inspect
import socket
import time

import pytest
from aiosmtpd.controller import Controller

from portal import audit, clock, notifications, projects, site
from portal.dicom import samples
from portal.tables import AiAlert, AuditEvent, EmailOutbox, Flag, Notification, Series, User
from tests.helpers import creds, form_post, login, make_project, make_user

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self):
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append({"rcpt": list(envelope.rcpt_tos), "from": envelope.mail_from,
                              "message": email.message_from_bytes(envelope.content, policy=email.policy.default)})
        return "250 OK"


class RefusingInbox(Inbox):
    """Refuses one address at RCPT time, as a relay does for an unknown mailbox."""

    def __init__(self, refuse: str):
        super().__init__()
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address == self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None, **kw):
        self.port = port or free_port()
        self.inbox = Inbox()
        self.kw = kw
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **self.kw)
        self.controller.start()
        return self

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(lb_env, smtp_server):
    from portal import settings as settings_mod

    return settings_mod.load({**lb_env, "LIGHTBOX_SMTP_URL": f"smtp://127.0.0.1:{smtp_server.port}"})


async def wait_for(check, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def case(app, client, tmp_path):
    """Project 'p' with a reviewer (sender), a senior reviewer, a viewer and a configured team address; one
    uploaded CT series with a decision."""
    p = await make_project("p", {"rev": "reviewer", "senior": "senior_reviewer", "view": "viewer"})
    await make_user("outsider")
    await make_user("admin", admin=True)
    await projects.update_settings(p, {"ai_routing": [], "email_recipients": ["Team <team@hospital.test>"]})
    f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm")
    with open(f, "rb") as fh:
        r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data={"Project": "p"},
                              files={"file": ("a.dcm", fh)})
    body = r.json()
    r = await client.post("/api/v1/scan-decisions", headers=creds("rev"),
                          json={"series": body["SeriesInstanceUID"], "decision": "Q?", "note": "ghosting?"})
    assert r.status_code == 201, r.text
    return body


async def test_flag_mail_reaches_colleagues_with_link_history_and_screenshot(client, consumer, smtp_server, case):
    uid = case["SeriesInstanceUID"]
    shot = "data:image/png;base64," + base64.b64encode(PNG).decode()
    r = await client.post("/api/v1/email", headers=creds("rev"), json={
        "series": uid, "to": ["senior"], "cc": ["team@hospital.test"], "body": "Please look at the apex.",
        "screenshot": shot})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued" and r.json()["to"] == ["senior <senior@example.org>"]

    got = await wait_for(lambda: smtp_server.inbox.messages, what="the message")
    assert len(got) == 1
    m, msg = got[0], got[0]["message"]
    assert sorted(m["rcpt"]) == ["senior@example.org", "team@hospital.test"]
    assert msg["Subject"].startswith("Regarding p, ") and msg["Reply-To"] == "rev <rev@example.org>"
    text = msg.get_body(("plain",)).get_content()
    link = f"http://lightbox.test/projects/p/series/{uid}"
    assert link in text and case["StudyInstanceUID"] in text and uid in text
    assert "Please look at the apex." in text and "Q?" in text and "ghosting?" in text  # the decision history
    related = [part for part in msg.walk() if part.get_content_type() == "multipart/related"]
    assert related, "the HTML part carries the screenshot inline (multipart/related)"
    images = [part for part in msg.walk() if part.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0]["Content-ID"] == "<screenshot@lightbox>"
    assert images[0].get_content() == PNG
    assert "cid:screenshot@lightbox" in msg.get_body(("html",)).get_content()

    row = await wait_for(lambda: EmailOutbox.objects().get(EmailOutbox.state == "sent"), what="sent state")
    assert row.attempts == 1 and row.transport == "smtp"
    assert await Flag.count() == 1
    senior = await User.objects().get(User.username == "senior")
    assert await notifications.unread_count(senior) == 1
    events = [e["action"] for e in await audit.search(object=uid)]
    assert "series_flagged" in events and "mail_sent" in events


@pytest.mark.parametrize("to", ["stranger@elsewhere.test", "outsider", ["senior", "outsider@example.org"]])
async def test_recipient_outside_the_project_is_refused_and_nothing_is_queued(client, case, to):
    r = await client.post("/api/v1/email", headers=creds("rev"),
                          json={"series": case["SeriesInstanceUID"], "to": to, "body": "x"})
    assert r.status_code == 400, r.text
    assert r.json()["suberror"] == "recipient_not_allowed" and "outsider" in r.text or "stranger" in r.text
    assert await EmailOutbox.count() == 0 and await Flag.count() == 0 and await Notification.count() == 0


async def test_viewer_may_not_flag_and_outsider_cannot_see(client, case):
    r = await client.post("/api/v1/email", headers=creds("view"), json={"series": case["SeriesInstanceUID"],
                                                                        "to": ["senior"]})
    assert r.status_code == 403
    r = await client.post("/api/v1/email", headers=creds("outsider"), json={"series": case["SeriesInstanceUID"],
                                                                            "to": ["senior"]})
    assert r.status_code == 404
    r = await client.post("/api/v1/email", headers=creds("rev"), json={"to": ["senior"]})
    assert r.status_code == 400
    assert await EmailOutbox.count() == 0


async def test_default_recipients_when_none_given(client, case):
    r = await client.post("/api/v1/email", headers=creds("rev"), json={"series": case["SeriesInstanceUID"]})
    assert r.status_code == 201, r.text
    row = await EmailOutbox.objects().first()
    assert row.recipients in (["Team <team@hospital.test>"], '["Team <team@hospital.test>"]')


async def test_smtp_down_then_up_still_delivers(lb_env, app, client, consumer, case, monkeypatch):
    from portal import settings as settings_mod
    from portal.mail import outbox

    port = free_port()  # nothing listens here yet
    settings_mod.use(settings_mod.load({**lb_env, "LIGHTBOX_SMTP_URL": f"smtp://127.0.0.1:{port}"}))
    monkeypatch.setattr(outbox, "BACKOFF_S", 0.5)
    r = await client.post("/api/v1/email", headers=creds("rev"),
                          json={"series": case["SeriesInstanceUID"], "to": ["senior"], "body": "while down"})
    assert r.status_code == 201
    failed = await wait_for(lambda: EmailOutbox.objects().get(EmailOutbox.attempts >= 2), what="failed attempts")
    assert failed.state == "pending" and failed.last_error  # kept, with the reason, for the next attempt
    server = SmtpServer(port).start()
    try:
        got = await wait_for(lambda: server.inbox.messages, timeout=30, what="delivery after the outage")
        assert got[0]["rcpt"] == ["senior@example.org"] and "while down" in got[0]["message"].get_body(
            ("plain",)).get_content()
        row = await wait_for(lambda: EmailOutbox.objects().get(EmailOutbox.state == "sent"), what="sent")
        assert row.attempts >= 3
    finally:
        server.stop()


async def test_sweep_delivers_mail_whose_task_was_lost(client, consumer, smtp_server, case, monkeypatch):
    """A worker that died (or a queue that was down) when the message was written: the sweep sends it."""
    from portal.mail import outbox
    from portal.tasks import mail as mail_tasks

    monkeypatch.setattr(outbox, "enqueued_hooks", [])
    r = await client.post("/api/v1/email", headers=creds("rev"), json={"series": case["SeriesInstanceUID"],
                                                                       "to": ["senior"]})
    assert r.status_code == 201
    await asyncio.sleep(0.5)
    assert not smtp_server.inbox.messages and (await EmailOutbox.objects().first()).state == "pending"
    await asyncio.to_thread(mail_tasks.sweep_outbox.call_local)
    await wait_for(lambda: smtp_server.inbox.messages, what="the swept message")
    await asyncio.to_thread(mail_tasks.sweep_outbox.call_local)  # a second sweep sends nothing twice
    await asyncio.sleep(0.5)
    assert len(smtp_server.inbox.messages) == 1


async def _acquired_now(case) -> Series:
    """The case's series, its study dated now: an AI alert mails at once only for a recent acquisition."""
    from portal.tables import Study

    series = await Series.objects().get(Series.series_instance_uid == case["SeriesInstanceUID"])
    now = clock.now()
    await Study.update({Study.study_date: now.strftime("%Y%m%d"), Study.study_time: now.strftime("%H%M%S")}).where(
        Study.id == series.study)
    await Series.update({Series.series_date: ""}).where(Series.id == series.id)
    return series


async def test_ai_alert_mails_senior_reviewers_once(client, consumer, smtp_server, case):
    from portal.mail import alerts

    series = await _acquired_now(case)
    await AiAlert.insert(AiAlert(key=f"{series.id}:m:1", project=series.project, series=series.id, model_name="m",
                                 model_version="1", output="quality", value=0.05, message="likely unusable",
                                 created_at=clock.now()))
    assert await alerts.deliver_pending() == 1
    assert await alerts.deliver_pending() == 0  # once per series and model version
    got = await wait_for(lambda: smtp_server.inbox.messages, what="the alert")
    assert got[0]["rcpt"] == ["senior@example.org"]
    msg = got[0]["message"]
    assert msg["Subject"].startswith("AI alert: p, ")
    assert f"http://lightbox.test/projects/p/series/{series.series_instance_uid}" in msg.get_content()
    senior = await User.objects().get(User.username == "senior")
    assert [n["kind"] for n in await notifications.for_user(senior)] == ["alert"]
    await asyncio.sleep(0.3)
    assert len(smtp_server.inbox.messages) == 1


async def test_digest_users_get_one_daily_message_instead(client, consumer, smtp_server, case):
    senior = await User.objects().get(User.username == "senior")
    await notifications.set_preference(senior, "digest")
    r = await client.post("/api/v1/email", headers=creds("rev"), json={"series": case["SeriesInstanceUID"],
                                                                       "to": ["senior", "team@hospital.test"]})
    assert r.status_code == 201
    got = await wait_for(lambda: smtp_server.inbox.messages, what="the flag mail")
    assert got[0]["rcpt"] == ["team@hospital.test"]  # senior waits for the digest
    assert await notifications.send_digests() == 1
    await wait_for(lambda: len(smtp_server.inbox.messages) == 2, what="the digest")
    digest = smtp_server.inbox.messages[1]
    assert digest["rcpt"] == ["senior@example.org"] and "/projects/p/series/" in digest["message"].get_content()
    assert await notifications.send_digests() == 0


async def test_without_smtp_mail_stays_in_outbox_and_log(lb_env, app, client, consumer, case, caplog):
    from portal import settings as settings_mod

    settings_mod.use(settings_mod.load(lb_env))  # no LIGHTBOX_SMTP_URL
    caplog.set_level("INFO", logger="lightbox.mail")
    r = await client.post("/api/v1/email", headers=creds("rev"), json={"series": case["SeriesInstanceUID"],
                                                                       "to": ["senior"], "body": "logged"})
    assert r.status_code == 201
    row = await wait_for(lambda: EmailOutbox.objects().get(EmailOutbox.state == "sent"), what="logged")
    assert row.transport == "log"
    assert any("Regarding p" in rec.getMessage() for rec in caplog.records)


async def test_portal_flag_panel_badge_and_history(client, consumer, smtp_server, case):
    uid = case["SeriesInstanceUID"]
    await login(client, "rev")
    panel = await client.get(f"/projects/p/series/{uid}/flags")
    assert "Flag for discussion" in panel.text and "flagged-badge" not in panel.text
    assert 'value="Team &lt;team@hospital.test&gt;"' in panel.text and "senior" in panel.text
    assert "outsider" not in panel.text
    r = await form_post(client, f"/projects/p/series/{uid}/flags", {"to": ["senior", "Team <team@hospital.test>"],
                                                                   "note": "portal note",
                                                                   "screenshot": "data:image/png;base64,"
                                                                   + base64.b64encode(PNG).decode()},
                        headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text
    assert "flagged-badge" in r.text and "portal note" in r.text
    await wait_for(lambda: smtp_server.inbox.messages, what="the portal flag")
    study = await client.get(f"/projects/p/studies/{case['StudyInstanceUID']}")
    assert 'class="badge flagged"' in study.text  # the study page marks the flagged series
    bad = await form_post(client, f"/projects/p/series/{uid}/flags", {"to": "evil@elsewhere.test", "note": "x"},
                          headers={"HX-Request": "true"})
    assert bad.status_code == 400 and "Not allowed as recipient" in bad.text
    nobody = await form_post(client, f"/projects/p/series/{uid}/flags", {"note": "x"}, headers={"HX-Request": "true"})
    assert nobody.status_code == 400 and "Choose at least one recipient" in nobody.text  # no silent defaults
    assert await Flag.count() == 1
    await login(client, "senior")
    bell = await client.get("/notifications/bell")
    assert 'class="bell-count">1<' in bell.text
    page = await client.get("/notifications")
    assert "portal note" in page.text


async def test_signup_waits_for_approval(client, smtp_server, case):
    assert (await client.get("/signup")).status_code == 404  # closed by default
    await login(client, "admin")
    r = await form_post(client, "/admin/site", {"signup": "approval"})
    assert r.status_code == 303 and await site.get("signup") == "approval"
    client.cookies.clear()
    assert "/signup" in (await client.get("/login")).text
    r = await form_post(client, "/signup", {"username": "newbie", "email": "newbie@example.org",
                                            "password": "long-enough-pw", "password2": "long-enough-pw"})
    assert r.status_code == 303
    newbie = await User.objects().get(User.username == "newbie")
    assert not newbie.is_active and newbie.approval == "pending"
    ask = await EmailOutbox.objects().get(EmailOutbox.kind == "signup")
    assert "admin@example.org" in str(ask.recipients) and "http://lightbox.test/admin/signups" in ask.body
    r = await form_post(client, "/login", {"username": "newbie", "password": "long-enough-pw"})
    assert r.status_code == 401
    await login(client, "admin")
    assert "newbie" in (await client.get("/admin/signups")).text
    r = await form_post(client, "/admin/signups/newbie", {"decision": "approve"})
    assert r.status_code == 303
    assert (await User.objects().get(User.username == "newbie")).is_active
    told = await EmailOutbox.objects().get(EmailOutbox.kind == "approval")
    assert "newbie@example.org" in str(told.recipients) and "approved" in told.subject
    await login(client, "newbie", "long-enough-pw")


async def test_outbox_page_lists_and_resends(client, case, monkeypatch):
    from portal.mail import outbox

    monkeypatch.setattr(outbox, "enqueued_hooks", [])
    r = await client.post("/api/v1/email", headers=creds("rev"), json={"series": case["SeriesInstanceUID"],
                                                                       "to": ["senior"]})
    row = await EmailOutbox.objects().first()
    await EmailOutbox.update({EmailOutbox.state: "failed", EmailOutbox.attempts: 30,
                              EmailOutbox.last_error: "ConnectionRefusedError"}).where(EmailOutbox.id == row.id)
    await login(client, "admin")
    page = await client.get("/admin/outbox?state=failed")
    assert page.status_code == 200 and "ConnectionRefusedError" in page.text and row.subject in page.text
    r = await form_post(client, f"/admin/outbox/{row.id}/resend", {})
    assert r.status_code == 303
    again = await EmailOutbox.objects().get(EmailOutbox.id == row.id)
    assert again.state == "pending" and again.attempts == 0
    await login(client, "rev")
    assert (await client.get("/admin/outbox")).status_code == 403


async def test_audit_page_filters_and_csv(client, case):
    uid = case["SeriesInstanceUID"]
    params = {"Project": "p", "PatientID": case["PatientID"], "StudyInstanceUID": case["StudyInstanceUID"],
              "SeriesInstanceUID": uid}
    assert (await client.get("/api/v1/dicom/get/", params=params, headers=creds("view"))).status_code == 200
    r = await client.get(f"/dicomweb/p/studies/{case['StudyInstanceUID']}/series/{uid}", headers=creds("view"))
    assert r.status_code == 200
    await client.post("/api/v1/email", headers=creds("rev"), json={"series": uid, "to": ["senior"]})
    await login(client, "admin")
    page = await client.get("/admin/audit", params={"object": "project:p"})
    for action in ("upload", "decision", "download", "series_flagged", "project_settings_changed"):
        assert f'data-action="{action}"' in page.text, action
    only_view = await client.get("/admin/audit", params={"user": "view", "action": "download"})
    assert only_view.text.count('data-action="download"') == 2 and 'data-action="decision"' not in only_view.text
    today, yesterday = clock.now().strftime("%Y-%m-%d"), (clock.now() - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    csv = await client.get("/admin/audit", params={"since": yesterday, "until": today, "object": uid, "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "time,user,action,object,client,detail" and len(lines) >= 5
    assert any(",view,download," in line and "zip" in line for line in lines)
    await audit.record("login_failed", username="=HYPERLINK(1)", object="user:=HYPERLINK(1)")
    formula = await client.get("/admin/audit", params={"action": "login_failed", "format": "csv"})
    assert ",'=HYPERLINK(1),login_failed,user:=HYPERLINK(1)," in formula.text  # never a live formula
    empty = await client.get("/admin/audit", params={"since": "2001-01-01", "until": "2001-01-02"})
    assert "No events match" in empty.text
    assert (await client.get("/admin/audit", params={"since": "yesterday"})).status_code == 400
    r = await client.get("/api/v1/series/delete/", params=params, headers=creds("rev"))
    assert r.status_code == 403
    await projects.set_member(await projects.get("p"), "rev", "manager")
    assert (await client.get("/api/v1/series/delete/", params=params, headers=creds("rev"))).status_code == 200
    assert await AuditEvent.exists().where(AuditEvent.action == "series_deleted")


async def test_manager_sets_mail_recipients(client, case):
    await make_project("q", {"boss": "manager", "rev2": "reviewer"})
    await login(client, "boss")
    r = await form_post(client, "/projects/q/settings/mail", {"email_recipients": "Board <board@hospital.test>",
                                                             "alert_recipients": "rev2\nnight@hospital.test"})
    assert r.status_code == 200 and "Mail settings saved" in r.text
    conf = projects.settings_of(await projects.get("q"))
    assert conf["email_recipients"] == ["Board <board@hospital.test>"]
    assert conf["alert_recipients"] == ["rev2", "night@hospital.test"]
    r = await form_post(client, "/projects/q/settings/mail", {"email_recipients": "not-an-address"})
    assert r.status_code == 400 and "not an email address" in r.text
    r = await form_post(client, "/projects/q/settings/mail", {"alert_recipients": "outsider"})
    assert r.status_code == 400
    assert (await client.get("/projects/q/settings")).status_code == 200


async def test_critical_inference_result_mails_once_even_when_the_job_is_retried(client, case):
    """The hook in inference: jobs.finish stores the alert and queues its mail; a retried finish adds nothing."""
    from portal.inference import jobs, models
    from portal.tables import InferenceJob

    if models.manifest_for("lightbox-quality") is None:
        pytest.skip("the built-in model is not installed")
    series = await _acquired_now(case)
    version = models.manifest_for("lightbox-quality")["version"]
    job = InferenceJob(project=series.project, series=series.id, model_name="lightbox-quality", model_version=version,
                       state="running", queued_at=clock.now())
    await job.save()
    outcome = {"scores": {"quality": 0.03}, "critical": True, "report": "likely unusable"}
    await jobs.finish(job.id, outcome)
    await jobs.finish(job.id, outcome)
    assert await AiAlert.count() == 1
    rows = await EmailOutbox.select().where(EmailOutbox.kind == "alert")
    assert len(rows) == 1 and "senior@example.org" in str(rows[0]["recipients"])
    assert f"/projects/p/series/{series.series_instance_uid}" in rows[0]["body"]


async def test_a_recipient_the_server_refuses_does_not_resend_to_the_others(client, consumer, smtp_server, case):
    from portal.tables import EmailOutbox

    smtp_server.inbox = RefusingInbox("team@hospital.test")
    smtp_server.stop()
    smtp_server.start()
    r = await client.post("/api/v1/email", headers=creds("rev"), json={
        "series": case["SeriesInstanceUID"], "to": ["senior"], "cc": ["team@hospital.test"], "body": "Look."})
    assert r.status_code == 201, r.text
    got = await wait_for(lambda: smtp_server.inbox.messages, what="the message")
    assert got[0]["rcpt"] == ["senior@example.org"]
    row = await wait_for(lambda: EmailOutbox.select().where(EmailOutbox.state == "sent").first(), what="sent state")
    assert "team@hospital.test" in row["last_error"] and row["attempts"] == 1
    await asyncio.sleep(1.5)
    assert len(smtp_server.inbox.messages) == 1  # never sent again to the senior reviewer
