"""SMTP transport from LIGHTBOX_SMTP_URL: the URL forms, and real deliveries over plain, STARTTLS + login and TLS."""

from __future__ import annotations

import datetime as dt
import ssl
import time
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from portal.errors import Invalid
from portal.mail import smtp
from tests.api.test_mail import Inbox, free_port


@pytest.mark.parametrize("url,expected", [
    ("smtp://mail.example.org", ("mail.example.org", 25, "plain", "", "")),
    ("smtp://u:p%40ss@mail.example.org:2525", ("mail.example.org", 2525, "plain", "u", "p@ss")),
    ("smtp://u:p@mail.example.org:587?starttls=1", ("mail.example.org", 587, "starttls", "u", "p")),
    ("smtp+starttls://u:p@mail.example.org", ("mail.example.org", 587, "starttls", "u", "p")),
    ("smtps://u:p@mail.example.org", ("mail.example.org", 465, "tls", "u", "p")),
])
def test_url_forms(url, expected):
    t = smtp.parse(url)
    assert (t.host, t.port, t.security, t.username, t.password) == expected
    assert "p@ss" not in repr(t) and ":p@" not in repr(t)


@pytest.mark.parametrize("url", ["", "http://mail.example.org", "smtp://", "mailto:x@example.org"])
def test_bad_urls(url):
    with pytest.raises(Invalid):
        smtp.parse(url)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "cert.pem", d / "key.pem"


def _server_context(tls_files) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*map(str, tls_files))
    return ctx


def _auth(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.login == b"lb" and auth_data.password == b"s3cret")


def _message() -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "lightbox@example.org", "senior@example.org", "hello"
    m.set_content("body")
    return m


def _wait(inbox: Inbox) -> list:
    deadline = time.monotonic() + 10
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    return inbox.messages


def test_starttls_with_login(tls_files):
    inbox, port = Inbox(), free_port()
    c = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=_server_context(tls_files),
                   require_starttls=True, authenticator=_auth, auth_require_tls=True)
    c.start()
    try:
        smtp.send(smtp.parse(f"smtp://lb:s3cret@127.0.0.1:{port}?starttls=1&verify=0"), _message())
        assert _wait(inbox)[0]["rcpt"] == ["senior@example.org"]
        with pytest.raises(Exception):  # wrong password
            smtp.send(smtp.parse(f"smtp+starttls://lb:wrong@127.0.0.1:{port}?verify=0"), _message())
        with pytest.raises(ssl.SSLError):  # a self-signed certificate is refused unless verify=0
            smtp.send(smtp.parse(f"smtp+starttls://lb:s3cret@127.0.0.1:{port}"), _message())
    finally:
        c.stop()


def test_implicit_tls_with_login(tls_files):
    inbox, port = Inbox(), free_port()
    c = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=_server_context(tls_files),
                   authenticator=_auth, auth_require_tls=False)
    c.start()
    try:
        smtp.send(smtp.parse(f"smtps://lb:s3cret@127.0.0.1:{port}?verify=0"), _message())
        assert _wait(inbox)[0]["message"]["Subject"] == "hello"
    finally:
        c.stop()
