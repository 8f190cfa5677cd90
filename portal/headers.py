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

_COMMON = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"same-origin"), (b"cross-origin-opener-policy", b"same-origin")]


def security_headers(app):
    """ASGI middleware: adds the headers to every HTTP response that does not set them itself."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        csp = (DOCS_CSP if scope.get("path", "").startswith("/schema") else PORTAL_CSP).encode()

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
    csp = DOCS_CSP if path.startswith("/schema") else PORTAL_CSP
    return {"content-security-policy": csp, **{k.decode(): v.decode() for k, v in _COMMON}}
