"""SMTP delivery from `LIGHTBOX_SMTP_URL`: plain, STARTTLS or TLS, with or without login.

    smtp://host:25                      plain
    smtp://user:pass@host:587?starttls=1 (or smtp+starttls://…)  STARTTLS, then login
    smtps://user:pass@host:465          TLS from the first byte

Blocking (smtplib): called from a queue worker thread, never on the web app's event loop.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlparse

from portal.errors import Invalid

TIMEOUT_S = 20


@dataclass(frozen=True)
class Transport:
    host: str
    port: int
    security: str  # plain | starttls | tls
    username: str = ""
    password: str = ""
    verify: bool = True  # check the server's certificate (off only with ?verify=0, e.g. a test server)

    def __repr__(self) -> str:  # never show the password in logs
        return f"Transport({self.security}://{self.username + '@' if self.username else ''}{self.host}:{self.port})"


def _truthy(params: dict, name: str) -> bool:
    return (params.get(name, [""])[0] or "").lower() in ("1", "true", "yes", "on")


def parse(url: str) -> Transport:
    """The transport an SMTP URL names; Invalid for anything else."""
    u = urlparse(url or "")
    params = parse_qs(u.query)
    schemes = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls", "smtp+tls": "tls"}
    if u.scheme not in schemes or not u.hostname:
        raise Invalid(f"LIGHTBOX_SMTP_URL must look like smtp://user:pass@host:port (or smtps://, "
                      f"smtp+starttls://); got scheme '{u.scheme}'.", "bad_smtp_url")
    security = schemes[u.scheme]
    if security == "plain" and _truthy(params, "starttls"):
        security = "starttls"
    port = u.port or {"plain": 25, "starttls": 587, "tls": 465}[security]
    verify = not (params.get("verify", [""])[0] in ("0", "false", "no", "off"))
    return Transport(host=u.hostname, port=port, security=security, username=unquote(u.username or ""),
                     password=unquote(u.password or ""), verify=verify)


def _context(t: Transport) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not t.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send(t: Transport, message: EmailMessage) -> dict:
    """Deliver `message` to the addresses in its To and Cc headers. Raises when nobody got it; returns the
    addresses the server refused ({address: (code, reply)}) when only some did: those who got it must not
    get it again, so a partial refusal is not retried."""
    if t.security == "tls":
        conn = smtplib.SMTP_SSL(t.host, t.port, timeout=TIMEOUT_S, context=_context(t))
    else:
        conn = smtplib.SMTP(t.host, t.port, timeout=TIMEOUT_S)
    with conn:
        conn.ehlo()
        if t.security == "starttls":
            conn.starttls(context=_context(t))
            conn.ehlo()
        if t.username:
            conn.login(t.username, t.password)
        refused = conn.send_message(message)
    return {address: (code, reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply))
            for address, (code, reply) in (refused or {}).items()}
