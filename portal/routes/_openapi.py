"""What a route tells the OpenAPI document that Litestar cannot see in its signature.

Routes read their own bodies (after the permission check; JSON or form alike; uploads streamed to disk), and the
CAD4TB-style commands read their parameters from the query as the reference names them, so Litestar's generator sees
neither: `documented(...)` is the handler's `operation_class` that adds the request body, those query parameters and
answers in media types other than JSON. JSON answers are typed by the handler's return annotation (TypedDicts;
keys that may be absent in a `total=False` subclass, since `NotRequired` is not seen under postponed annotations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, Parameter, RequestBody

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
DICOM_JSON = "application/dicom+json"
DICOM_PARTS = 'multipart/related; type="application/dicom"'

STR: dict = {"type": "string"}
BOOL: dict = {"type": "boolean"}
INT: dict = {"type": "integer"}
NUMBER: dict = {"type": "number"}
NULL: dict = {"type": "null"}
BINARY: dict = {"type": "string", "format": "binary"}


def obj(required: tuple[str, ...] = (), *, closed: bool = False, others: dict | None = None,
        **properties: dict) -> dict:
    """A JSON-schema object with these properties; `closed`: no others are accepted; `others`: the schema of others."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed or others is not None:
        schema["additionalProperties"] = False if closed else others
    return schema


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def nullable(schema: dict) -> dict:
    return {"oneOf": [NULL, schema]}


def enum(values) -> dict:
    """One of the domain's own values (pass its constants, so that the document follows the code)."""
    return {"type": "string", "enum": list(values)}


def json_or_form(schema: dict) -> dict[str, dict]:
    """What `_body.json_or_form` reads: the same fields as a JSON object or as form fields."""
    return {JSON: schema, FORM: schema, MULTIPART: schema}


# DICOM JSON (PS3.18 F.2), what QIDO-RS, WADO-RS metadata and STOW-RS answer: a dataset is an object of
# attributes by tag; a sequence's values are datasets again, so the dataset is a component that refers to itself
# (portal/openapi_docs.py adds COMPONENTS to the document).
VRS = ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
       "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV")
DATASET: dict = {"$ref": "#/components/schemas/DicomDataset"}
_PERSON_NAME = obj(closed=True, Alphabetic=STR, Ideographic=STR, Phonetic=STR)
_ATTRIBUTE = obj(("vr",), closed=True, vr=enum(VRS),
                 Value=array({"anyOf": [STR, NUMBER, NULL, _PERSON_NAME, DATASET]}), BulkDataURI=STR, InlineBinary=STR)
COMPONENTS = {"DicomDataset": {**obj(others=_ATTRIBUTE), "propertyNames": {"pattern": "^[0-9A-F]{8}$"},
                               "description": "DICOM JSON: attributes by tag (8 hexadecimal digits)"}}

# The CAD4TB-style commands' parameters (seeds/cad4tb-api-v1.txt), as far down the hierarchy as each command goes.
WHERE = {"Project": "The project; the caller's only project when absent",
          "Archive": "The archive of the project (default: 'default')"}
PATIENT = {**WHERE, "PatientID": "PatientID of the patient"}
STUDY = {**PATIENT, "StudyInstanceUID": "StudyInstanceUID of the study"}
SERIES = {**STUDY, "SeriesInstanceUID": "SeriesInstanceUID of the series"}


def documented(*, body: dict[str, dict] | None = None, body_required: bool = True, body_description: str = "",
               query: dict[str, str] | None = None, required: tuple[str, ...] = (),
               answers: dict[int, dict[str, dict]] | None = None) -> type[Operation]:
    """An Operation class for a handler's `operation_class`:

    body: {media type: schema} the route reads; query: {name: description} of string query parameters it reads
    (`required` names those it cannot do without); answers: {status: {media type: schema}} for what it sends that
    Litestar cannot infer (images, DICOM, zips, several media types for one status)."""

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            if body:
                self.request_body = RequestBody(
                    content={media: OpenAPIMediaType(schema=schema) for media, schema in body.items()},
                    required=body_required, description=body_description or None)
            if query:
                known = {p.name for p in self.parameters or [] if isinstance(p, Parameter)}
                self.parameters = [*(self.parameters or []), *(
                    Parameter(name=name, param_in="query", schema=STR, required=name in required, description=text)
                    for name, text in query.items() if name not in known)]
            for status, content in (answers or {}).items():
                responses = self.responses if self.responses is not None else {}
                old = responses.get(str(status))
                responses[str(status)] = OpenAPIResponse(
                    description=old.description if isinstance(old, OpenAPIResponse) else "Request fulfilled",
                    content={media: OpenAPIMediaType(schema=schema) for media, schema in content.items()})
                self.responses = responses

    return Documented
