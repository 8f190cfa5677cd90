"""DICOMweb (PS3.18) for one project: STOW-RS store, QIDO-RS search, WADO-RS retrieve; no HTTP framework here."""

from portal.dicomweb import qido, stow, wado
from portal.dicomweb.accept import NotAcceptable, parse_accept
from portal.dicomweb.links import Links
from portal.dicomweb.multipart import Part, body, content_type, new_boundary

__all__ = ["Links", "NotAcceptable", "Part", "body", "content_type", "new_boundary", "parse_accept", "qido", "stow",
           "wado"]
