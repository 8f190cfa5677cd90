"""Content negotiation: which of the representations we can send a client's Accept header allows."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    JPEG2000MC,
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from portal.errors import LightboxError
from portal.uploads import media_type

OCTET_STREAM = "application/octet-stream"

# The media type of a compressed frame as it sits in the file (PS3.18 Table 8.7.3-2).
FRAME_MEDIA_TYPES: dict[str, str] = {
    RLELossless: "image/dicom-rle",
    JPEGBaseline8Bit: "image/jpeg",
    JPEGExtended12Bit: "image/jpeg",
    JPEGLossless: "image/jpeg",
    JPEGLosslessSV1: "image/jpeg",
    JPEGLSLossless: "image/jls",
    JPEGLSNearLossless: "image/jls",
    JPEG2000Lossless: "image/jp2",
    JPEG2000: "image/jp2",
    JPEG2000MCLossless: "image/jpx",
    JPEG2000MC: "image/jpx",
    HTJ2KLossless: "image/jphc",
    HTJ2KLosslessRPCL: "image/jphc",
    HTJ2K: "image/jphc",
}


class NotAcceptable(LightboxError):
    status = 406
    error = "not_acceptable"


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header; `multipart/related; type=X` counts as X."""

    media_type: str
    transfer_syntax: str = ""
    q: float = 1.0

    def allows(self, media: str, transfer_syntax: str = "") -> bool:
        wanted = self.transfer_syntax
        if not wanted and self.media_type == OCTET_STREAM:
            wanted = ExplicitVRLittleEndian  # the default of application/octet-stream (PS3.18 8.7.3.5.2)
        if wanted not in ("", "*") and transfer_syntax and wanted != transfer_syntax:
            return False
        if self.media_type in ("*", "*/*"):
            return True
        if self.media_type.endswith("/*"):
            return media.startswith(self.media_type[:-1])
        return self.media_type == media


@dataclass(frozen=True)
class Offer:
    """A representation we can send: its media type, transfer syntax, and anything the sender needs to know."""

    media_type: str
    transfer_syntax: str = ""
    decode: bool = False


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of an Accept header, most preferred first; no header accepts anything."""
    ranges = []
    # Split on commas outside quotes: a quoted parameter may in principle contain one.
    for item in re.findall(r'(?:[^,"]|"[^"]*")+', header or ""):
        main, params = media_type(item.strip())
        if not main:
            continue
        if main == "multipart/related":
            main = params.get("type", "*/*").strip().lower() or "*/*"
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranges.append(MediaRange(main, params.get("transfer-syntax", "").strip(), q))
    ranges.sort(key=lambda r: -r.q)  # stable: equal weights keep the client's order
    return ranges or [MediaRange("*/*")]


def acceptable(accepted: list[MediaRange], offers: list[Offer]) -> list[Offer]:
    """Every offer the client accepts, in the client's order of preference (each once)."""
    out: list[Offer] = []
    for r in accepted:
        for offer in offers:
            if offer not in out and r.allows(offer.media_type, offer.transfer_syntax):
                out.append(offer)
    return out


def choose(accepted: list[MediaRange], offers: list[Offer], what: str) -> Offer:
    """The first offer the client accepts, in the client's order of preference; else 406."""
    found = acceptable(accepted, offers)
    if found:
        return found[0]
    raise not_acceptable(offers, what)


def not_acceptable(offers: list[Offer], what: str, why: str = "") -> NotAcceptable:
    can = ", ".join(f"{o.media_type}" + (f" (transfer-syntax={o.transfer_syntax})" if o.transfer_syntax else "")
                    for o in offers)
    return NotAcceptable(why or f"Cannot send {what} in any media type your Accept header allows; available: {can}.",
                         "not_acceptable")


def frame_offers(transfer_syntax: str) -> list[Offer]:
    """How a frame stored in `transfer_syntax` can be sent: as stored when we can name it, else decoded."""
    tsyntax = UID(transfer_syntax)
    native = Offer(OCTET_STREAM, ExplicitVRLittleEndian)
    if not tsyntax.is_encapsulated:
        return [native]  # big endian and deflated frames are handed out as little-endian native bytes
    offers = [Offer(FRAME_MEDIA_TYPES[tsyntax], tsyntax)] if tsyntax in FRAME_MEDIA_TYPES else []
    # As stored under application/octet-stream too, for clients asking `transfer-syntax=*` (or this one).
    offers.append(Offer(OCTET_STREAM, tsyntax))
    return offers + [Offer(OCTET_STREAM, ExplicitVRLittleEndian, decode=True)]


def instance_offers(transfer_syntax: str) -> list[Offer]:
    """An instance as stored, or transcoded to Explicit VR Little Endian (decoded when compressed)."""
    stored = Offer("application/dicom", transfer_syntax)
    if transfer_syntax == ExplicitVRLittleEndian:
        return [stored]
    return [stored, Offer("application/dicom", ExplicitVRLittleEndian, decode=True)]
