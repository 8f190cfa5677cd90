"""Security headers on every answer: a Content-Security-Policy the viewer and htmx work under, no framing,
no MIME sniffing, and a referrer that never carries a page's path (with its UIDs) to another site."""

from __future__ import annotations

# The portal loads only its own files. The viewer's codecs are WebAssembly ('wasm-unsafe-eval', not 'unsafe-eval')
# and decode in workers; canvas screenshots become data:/blob: images. Inline styles stay allowed (templates and
# htmx's indicator use them); inline scripts do not.
PORTAL_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
              "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
# The API docs pages (/schema/swagger, /schema/redoc) start their vendored bundles with an inline script.
DOCS_CSP = PORTAL_CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")

# The viewer's decode workers run emscripten glue that compiles strings ('unsafe-eval'). A worker has no DOM and
# its policy comes with its own script, so only those files get it; the pages keep the strict policy.
WORKER_CSP = PORTAL_CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'")


def _csp(path: str) -> str:
    if path.startswith("/schema"):
        return DOCS_CSP
    if path.startswith("/static/viewer/") and path.endswith("Worker.js"):
        return WORKER_CSP
    return PORTAL_CSP


_COMMON = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"same-origin"), (b"cross-origin-opener-policy", b"same-origin")]


def security_headers(app):
    """ASGI middleware: adds the headers to every HTTP response that does not set them itself."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        csp = _csp(scope.get("path", "")).encode()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                for name, value in [(b"content-security-policy", csp), *_COMMON]:
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def for_path(path: str) -> dict[str, str]:
    """The same headers as a dict, for answers made before the middleware runs (no route: 404, 405)."""
    return {"content-security-policy": _csp(path), **{k.decode(): v.decode() for k, v in _COMMON}}
