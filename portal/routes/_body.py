"""Reading request bodies for API routes: a JSON object, or a form, with clear errors otherwise."""

from __future__ import annotations

from litestar import Request

from portal.errors import Invalid, UnsupportedMediaType


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def json_object(request: Request, example: str = '{"...": "..."}') -> dict:
    """The body as a JSON object; 400 when it is not JSON or not an object."""
    try:
        data = await request.json()
    except Exception:
        raise Invalid(f"The body is not valid JSON; send an object like {example}.", "invalid_json")
    if not isinstance(data, dict):
        raise Invalid(f"Send a JSON object like {example}.", "invalid_json")
    return data


async def json_or_form(request: Request) -> dict:
    """A JSON object or form fields, whichever the client sent; 415 for anything else."""
    media = _media(request)
    if media == "application/json":
        return await json_object(request)
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return dict(await request.form())
    if not media:
        raise Invalid("The request has no body: send a form or a JSON object.", "no_data_submitted")
    raise UnsupportedMediaType(f"Unsupported content type '{media}': send a form or JSON.", "unsupported_media_type")


def row_count(form, key: str = "rows", most: int = 500) -> int:
    """How many rows an editable table posted (a hidden field): a whole number 0..most, else 400."""
    raw = (form.get(key) or "0").strip()
    if not raw.isdigit() or int(raw) > most:
        raise Invalid(f"'{key}' must be a whole number from 0 to {most}; reload the page and try again.",
                      "invalid_value", fields={key: "not a row count"})
    return int(raw)
