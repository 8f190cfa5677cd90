"""Settings: the environment variables of the contract, read once into small dataclasses."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    """Where the SQLite database, the queue file, image files and generated secrets live."""
    database_url: str = ""
    """`postgres://user:pass@host:port/db`; empty means SQLite in the data dir."""
    queue_url: str = ""
    """`redis://host:port/db`; empty means SqliteHuey in its own file in the data dir."""
    queue_name: str = "lightbox"
    """Name of the queue in Redis: installs sharing one Redis server need different names."""
    smtp_url: str = ""
    """`smtp://user:pass@host:port` (smtps:// for TLS); empty means mail goes to the outbox and the log."""
    base_url: str = "http://127.0.0.1:8000"
    """Public address of the portal, used for links in email."""
    base_url_set: bool = False
    """Whether LIGHTBOX_BASE_URL was given: DICOMweb's absolute URLs then use it rather than the Host header."""
    mail_from: str = ""
    """From address of the portal's mail (`LIGHTBOX_MAIL_FROM`); empty means lightbox@ the base URL's host."""
    secret_key: str = field(default="", repr=False)
    """Signs sessions and CSRF tokens; generated into the data dir when absent."""
    admin_password: str = field(default="", repr=False)
    """Password for the first admin; generated and stored 0600 in the data dir when absent."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the APIs and DICOMweb (`LIGHTBOX_CORS_ORIGINS`, comma-separated)."""
    storage_url: str = ""
    """Where image files, AI assets and export copies are stored: `s3://BUCKET[/PREFIX]?endpoint=URL` for an
    S3-compatible store (credentials and region from AWS_*), a folder path, or empty for the data dir's files."""

    @property
    def database_kind(self) -> str:
        return "postgres" if self.database_url.startswith(("postgres://", "postgresql://")) else "sqlite"

    @property
    def queue_kind(self) -> str:
        return "redis" if self.queue_url.startswith(("redis://", "rediss://", "unix://")) else "sqlite"

    @property
    def sender(self) -> str:
        """The From address of outgoing mail."""
        if self.mail_from:
            return self.mail_from
        host = urlparse(self.base_url).hostname or "localhost"
        if host.replace(".", "").isdigit() or ":" in host:  # an IP address is no mail domain
            host = "localhost"
        return f"Lightbox <lightbox@{host}>"

    @property
    def storage_kind(self) -> str:
        return "s3" if self.storage_url.startswith("s3://") else "local"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "lightbox.sqlite3"

    @property
    def queue_path(self) -> Path:
        # Kept apart from the app database: the consumer and the web app write both at once.
        return self.data_dir / "queue.sqlite3"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "files"

    def postgres_params(self) -> dict:
        """Connection parameters for asyncpg from `database_url`.

        User, password and database name are percent-decoded (a password with `@`, `:` or `/` is written
        `%40`, `%3A`, `%2F`). Query parameters as libpq reads them: `sslmode` (disable | allow | prefer |
        require | verify-ca | verify-full), `sslrootcert` (a CA file; with it, `require` verifies the server
        as `verify-ca` does), `sslcert`/`sslkey` (a client certificate), `statement_timeout` (milliseconds,
        default 60000: a runaway query is cancelled instead of holding a connection) and `application_name`.
        """
        u = urlparse(self.database_url)
        query = {k: v[-1] for k, v in parse_qs(u.query).items()}
        params = {
            "host": unquote(u.hostname or "") or "127.0.0.1",
            "port": u.port or 5432,
            "user": unquote(u.username or "") or "postgres",
            "database": unquote((u.path or "/").lstrip("/")) or "postgres",
        }
        if u.password:
            params["password"] = unquote(u.password)
        ssl = _postgres_ssl(query)
        if ssl is not None:
            params["ssl"] = ssl
        timeout = query.get("statement_timeout", str(STATEMENT_TIMEOUT_MS))
        if not timeout.isdigit():
            raise ValueError(f"statement_timeout in LIGHTBOX_DATABASE_URL must be milliseconds, not {timeout!r}")
        # Every statement planned for its own parameters: asyncpg prepares them, and after five runs PostgreSQL
        # may switch to one generic plan for any project. Projects differ in size by orders of magnitude,
        # and a plan fit for the average one read all 100k studies of a big project to page a small one's 20.
        params["server_settings"] = {"statement_timeout": timeout, "plan_cache_mode": "force_custom_plan",
                                     "application_name": query.get("application_name", "lightbox")}
        return params


STATEMENT_TIMEOUT_MS = 60_000
"""Default PostgreSQL statement timeout: long enough for an export's largest query, short enough to free a stuck one."""
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _postgres_ssl(query: dict):
    """asyncpg's `ssl` argument for the URL's sslmode/sslrootcert/sslcert/sslkey (None: asyncpg's default, prefer)."""
    mode = query.get("sslmode", "")
    if mode and mode not in SSL_MODES:
        raise ValueError(f"sslmode in LIGHTBOX_DATABASE_URL must be one of {', '.join(SSL_MODES)}, not {mode!r}")
    root, cert, key = query.get("sslrootcert"), query.get("sslcert"), query.get("sslkey")
    if mode in ("", "disable", "allow", "prefer") or not (root or cert):
        return mode or None  # asyncpg takes the libpq mode names as they are
    import ssl

    # A CA file given: verify the server against it (libpq does the same for `require`).
    context = ssl.create_default_context(cafile=root) if root else ssl.create_default_context()
    if mode in ("require", "verify-ca"):
        context.check_hostname = False
        if not root:  # a client certificate alone, like libpq's `require`, does not verify the server
            context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert, key)
    return context


def _secret_from_file(path: Path) -> str:
    """Read a generated secret, or create it 0600 on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def load(env: dict | None = None) -> Settings:
    """Build settings from the environment (or a given mapping)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("LIGHTBOX_DATA_DIR") or "./data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = env.get("LIGHTBOX_SECRET_KEY") or _secret_from_file(data_dir / "secret_key")
    return Settings(
        data_dir=data_dir,
        database_url=env.get("LIGHTBOX_DATABASE_URL", ""),
        queue_url=env.get("LIGHTBOX_QUEUE_URL", ""),
        queue_name=env.get("LIGHTBOX_QUEUE_NAME") or "lightbox",
        smtp_url=env.get("LIGHTBOX_SMTP_URL", ""),
        base_url=(env.get("LIGHTBOX_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
        base_url_set=bool(env.get("LIGHTBOX_BASE_URL")),
        mail_from=env.get("LIGHTBOX_MAIL_FROM", ""),
        secret_key=secret,
        admin_password=env.get("LIGHTBOX_ADMIN_PASSWORD", ""),
        cors_origins=tuple(o.strip().rstrip("/") for o in env.get("LIGHTBOX_CORS_ORIGINS", "").split(",")
                           if o.strip()),
        storage_url=env.get("LIGHTBOX_STORAGE_URL", "").strip(),
    )


_current: Settings | None = None


def current() -> Settings:
    """The settings the running process was configured with (loaded from the environment on first use)."""
    global _current
    if _current is None:
        _current = load()
    return _current


def use(settings: Settings) -> None:
    """Make `settings` the process-wide settings (the app factory and tests call this)."""
    global _current
    _current = settings
