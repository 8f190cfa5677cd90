"""LIGHTBOX_DATABASE_URL → asyncpg parameters: percent-decoding, sslmode/sslrootcert, statement timeout."""

import ssl
import subprocess

import pytest

from portal.settings import Settings


def params(url: str, tmp_path) -> dict:
    return Settings(tmp_path, database_url=url).postgres_params()


def test_percent_encoded_parts_are_decoded(tmp_path):
    p = params("postgres://lb%20user:p%40ss%3Aw%2Frd%25@db.example.org:6543/site%2Ddb", tmp_path)
    assert (p["user"], p["password"], p["host"], p["port"], p["database"]) == (
        "lb user", "p@ss:w/rd%", "db.example.org", 6543, "site-db")


def test_defaults_and_statement_timeout(tmp_path):
    p = params("postgresql://127.0.0.1/", tmp_path)
    assert (p["user"], p["database"], p["port"]) == ("postgres", "postgres", 5432)
    assert "password" not in p and "ssl" not in p
    assert p["server_settings"]["statement_timeout"] == "60000"
    p = params("postgres://u@h/db?statement_timeout=2500&application_name=worker-3", tmp_path)
    assert p["server_settings"] == {"statement_timeout": "2500", "plan_cache_mode": "force_custom_plan",
                                    "application_name": "worker-3"}
    with pytest.raises(ValueError, match="statement_timeout"):
        params("postgres://u@h/db?statement_timeout=soon", tmp_path)


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_sslmode_names_pass_to_asyncpg(tmp_path, mode):
    assert params(f"postgres://u@h/db?sslmode={mode}", tmp_path)["ssl"] == mode


def test_unknown_sslmode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sslmode"):
        params("postgres://u@h/db?sslmode=always", tmp_path)


@pytest.fixture
def ca_file(tmp_path):
    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True)
    return cert


def test_sslrootcert_verifies_the_server(tmp_path, ca_file):
    full = params(f"postgres://u@h/db?sslmode=verify-full&sslrootcert={ca_file}", tmp_path)["ssl"]
    assert isinstance(full, ssl.SSLContext) and full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname
    assert any(c["subject"] == ((("commonName", "test-ca"),),) for c in full.get_ca_certs())
    # libpq's rule: `require` with a root certificate verifies the chain as verify-ca does (not the host name).
    for mode in ("require", "verify-ca"):
        ctx = params(f"postgres://u@h/db?sslmode={mode}&sslrootcert={ca_file}", tmp_path)["ssl"]
        assert ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    # A mode that does not verify ignores the certificate.
    assert params(f"postgres://u@h/db?sslmode=prefer&sslrootcert={ca_file}", tmp_path)["ssl"] == "prefer"
