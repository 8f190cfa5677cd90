"""create_app(): routes, templates, static files, sessions, CSRF, error handling and lifespan."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from portal import __version__, db, settings as settings_mod, templates_env
from portal import headers as security
from portal.headers import security_headers
from portal.openapi_docs import DocumentedJson, DocumentedRedoc, DocumentedSwagger
from portal.errors import Invalid, LightboxError, NotFound, Unauthenticated
from portal.routes import admin, api_accounts, api_projects, api_v1, health, projects, qure, session, studies, upload
from portal.routes import dicomweb, inference, review
from portal.routes import forms
from portal.routes import form_applicability
from portal.routes import housekeeping
from portal.routes import admin_mail, mail, notifications, signup
from portal.routes import exchange
from portal.routes import dicomweb_images, network
from portal.routes import account
from portal.settings import Settings
from portal.tasks import queue

log = logging.getLogger("lightbox")
HERE = Path(__file__).resolve().parent

# Paths that speak JSON to programs: token/header authentication, JSON errors, no CSRF cookie.
API_PREFIXES = ("/api/", "/api-token-auth", "/dicomweb/", "/wado", "/healthz", "/schema")

# Litestar's own HTTP errors, in the API's error vocabulary.
_HTTP_ERROR_TYPES = {400: "invalid_post_value", 401: "not_authenticated", 403: "api_call_not_allowed",
                     404: "object_not_found", 405: "method_not_allowed", 413: "request_too_large",
                     415: "unsupported_media_type"}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIXES)


def _error_page(request: Request, status: int, title: str, detail: str) -> Template:
    if request.headers.get("hx-request") == "true":
        # An htmx swap gets the message in the page's flash area, not a whole page in a table cell.
        return Template(template_name="_error.html", status_code=status, context={"detail": detail},
                        headers={"HX-Retarget": "#flashes", "HX-Reswap": "innerHTML"})
    user = request.scope.get("lightbox_user")
    return Template(template_name="error.html", status_code=status,
                    context={"me": user, "title": title, "detail": detail, "flashes": []})


def handle_lightbox_error(request: Request, exc: LightboxError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if getattr(exc, "retry_after", None) else {}
    if _is_api(request):
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Token"
        return Response(exc.as_dict(), status_code=exc.status, headers=headers or None)
    if isinstance(exc, Unauthenticated):
        return Redirect(f"/login?next={quote(request.url.path)}", status_code=303)
    titles = {403: "Not permitted", 404: "Not found", 409: "Conflict", 429: "Too many attempts"}
    return _error_page(request, exc.status, titles.get(exc.status, "Cannot do that"), exc.detail)


def handle_http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
    if status == 413:
        limit = request.route_handler.resolve_request_max_body_size() or MAX_FORM_BODY
        detail = (f"The request is too large: at most {limit // (1024 * 1024)} MB may be sent here. Shorten what "
                  "you typed, or send large files through an upload page.")
    if isinstance(exc, ValidationException) and exc.extra:
        detail = f"{detail}: {exc.extra}"
    # Litestar's own headers (Allow on a 405) go out with our body; a request no route took never met the
    # security-headers middleware, so they are added here.
    headers = {**security.for_path(request.url.path),
               **{k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow", "retry-after")}}
    if _is_api(request):
        return Response({"error": _HTTP_ERROR_TYPES.get(status, "error"), "suberror": "", "detail": detail},
                        status_code=status, headers=headers)
    if isinstance(exc, NotAuthorizedException) and "csrf" in detail.lower():
        detail = "This form expired or was sent from elsewhere. Go back, reload the page and try again."
    response = _error_page(request, status, {404: "Not found", 405: "Not allowed"}.get(status, "Error"), detail)
    response.headers.update(headers)
    return response


_MAX_ID = 2**63 - 1  # the largest id any table can hold (BIGINT / SQLite INTEGER)
MAX_FORM_BODY = 1024 * 1024  # bytes, for every route that does not set its own (uploads and imports do)


async def ids_in_range(request: Request) -> None:
    """An id path parameter no table can hold names nothing: 404 before it reaches (and overflows) a query."""
    for value in request.path_params.values():
        if isinstance(value, int) and not -_MAX_ID <= value <= _MAX_ID:
            raise NotFound(f"There is nothing with id {value}.", "object_not_found", error="object_not_found")


def _out_of_range(exc: Exception) -> bool:
    """A number too big for the database (the backstop for query parameters): the caller's mistake, not ours."""
    return isinstance(exc, OverflowError) or type(exc).__name__ in (
        "NumericValueOutOfRangeError", "DataError") and "range" in str(exc)


def _nul_in_text(exc: Exception) -> bool:
    """Text with a NUL character, which PostgreSQL refuses to store or compare (SQLite takes it)."""
    return type(exc).__name__ == "CharacterNotInRepertoireError"


def handle_unexpected(request: Request, exc: Exception) -> Response:
    if _out_of_range(exc):
        return handle_lightbox_error(request, Invalid("A number in the request is too large.", "value_out_of_range"))
    if _nul_in_text(exc):
        return handle_lightbox_error(request, Invalid("Text in the request holds a NUL character (\\u0000), which "
                                                      "no name or value may contain.", "invalid_character"))
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if _is_api(request):
        return Response({"error": "server_error", "suberror": "",
                         "detail": "Something went wrong on the server; it has been logged."}, status_code=500)
    return _error_page(request, 500, "Something went wrong", "The error has been logged. Please try again.")


def _cors(settings: Settings) -> CORSConfig | None:
    """CORS for the origins in LIGHTBOX_CORS_ORIGINS (viewers served elsewhere); none when it is empty."""
    if not settings.cors_origins:
        return None
    origins = list(settings.cors_origins)
    # Credentials (Basic, cookies) only with named origins: browsers refuse them with "*".
    return CORSConfig(allow_origins=origins, allow_credentials="*" not in origins, allow_methods=["*"],
                      allow_headers=["*"], max_age=600,
                      expose_headers=["Content-Type", "Content-Length", "Content-Location", "Warning", "Location"])


_VENDOR = "/static/vendor"
_FAVICON = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'


def create_app(settings: Settings | None = None, *, lifespans: Sequence = ()) -> Litestar:
    settings = settings or settings_mod.load()
    settings_mod.use(settings)
    engine = db.configure(settings)
    queue.configure(settings)
    queue.load_tasks()  # registers ingest's hook that queues inference for new series

    @asynccontextmanager
    async def lifespan(app: Litestar):
        await db.open_pool(engine)  # this loop's pool; queue threads have their own (portal/tasks/runner.py)
        try:
            yield
        finally:
            await db.close_pool(engine)

    template_config = TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine,
                                     engine_callback=lambda engine: templates_env.register(engine.engine))
    secret = hashlib.sha256(settings.secret_key.encode()).digest()
    secure = settings.base_url.lower().startswith("https://")  # cookies only over TLS when the site is served so
    return Litestar(
        route_handlers=[
            health.healthz,
            session.home, session.login_form, session.login, session.logout,
            api_accounts.token_auth, api_accounts.list_users, api_accounts.users_me,
            api_projects.list_projects, api_projects.create_project, api_projects.get_project,
            api_projects.list_archives, api_projects.create_archive,
            *api_v1.ROUTES, *review.ROUTES, *inference.ROUTES, qure.upload_studies, upload.upload_page, upload.upload_batch, *studies.ROUTES,
            *dicomweb.ROUTES,
            *forms.ROUTES, *form_applicability.ROUTES, *housekeeping.ROUTES,
            *mail.ROUTES, *notifications.ROUTES, *admin_mail.ROUTES, *signup.ROUTES,
            *exchange.ROUTES,
            *network.ROUTES, *dicomweb_images.ROUTES,
            *account.ROUTES,
            projects.project_list, projects.project_create, projects.project_page, projects.settings_page,
            projects.archive_create, projects.dicom_save, projects.member_set, projects.member_remove,
            admin.users_page, admin.user_create, admin.user_page, admin.user_active, admin.user_admin_flag,
            admin.user_password, admin.token_issue, admin.token_revoke, admin.session_end,
            create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False),
        ],
        template_config=template_config,
        plugins=[HTMXPlugin()],
        middleware=[security_headers,
                    CookieBackendConfig(secret=secret, httponly=True, samesite="lax", key="lightbox_session",
                                        secure=secure, max_age=12 * 3600).middleware],
        cors_config=_cors(settings),
        csrf_config=CSRFConfig(secret=settings.secret_key, cookie_name="lightbox_csrf", cookie_samesite="lax",
                               cookie_secure=secure, exclude=[f"^{p}" for p in API_PREFIXES] + ["^/static/"]),
        exception_handlers={LightboxError: handle_lightbox_error, HTTPException: handle_http_error,
                            Exception: handle_unexpected},
        before_request=ids_in_range,
        request_max_body_size=MAX_FORM_BODY,
        openapi_config=OpenAPIConfig(title="Lightbox", version=__version__, path="/schema", render_plugins=[
            # Vendored, pinned bundles (static/vendor/update.sh): the docs load nothing from a CDN.
            DocumentedRedoc(js_url=f"{_VENDOR}/redoc-2.5.4.standalone.js", favicon=_FAVICON, google_fonts=False),
            DocumentedSwagger(js_url=f"{_VENDOR}/swagger-ui-bundle-5.35.0.js",
                                css_url=f"{_VENDOR}/swagger-ui-5.35.0.css",
                                standalone_preset_js_url=f"{_VENDOR}/swagger-ui-standalone-preset-5.35.0.js",
                                favicon=_FAVICON),
            DocumentedJson()]),
        lifespan=[lifespan, *lifespans],  # entered after the database pool opens, left before it closes
        debug=False,
    )
