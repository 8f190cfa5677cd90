"""Python client for Lightbox: upload DICOM, list studies and series, read AI results and QC decisions,
record decisions, export and import projects, send to DICOM nodes.

    from lightbox_client import Client
    lb = Client("https://lightbox.example.org", token="…")
"""

from lightbox_client.client import Client
from lightbox_client.errors import (ApiError, BadRequest, Conflict, Forbidden, LightboxError, NotFound, RateLimited,
                                    RunFailed, ServerError, Timeout, TooLarge, Unauthorized, Unavailable,
                                    UnsupportedMediaType)
from lightbox_client.models import Decision, Project, Results, Run, SendJob, Series, Study, UploadResult

__version__ = "0.1.0"

__all__ = ["Client", "ApiError", "BadRequest", "Conflict", "Forbidden", "LightboxError", "NotFound", "RateLimited",
           "RunFailed", "ServerError", "Timeout", "TooLarge", "Unauthorized", "Unavailable", "UnsupportedMediaType",
           "Decision", "Project", "Results", "Run", "SendJob", "Series", "Study", "UploadResult", "__version__"]
