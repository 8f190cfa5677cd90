"""Import/export of a project's state (Lightbox JSON and MIQA CSV), de-identified exports, and scheduled sync.

Plain async functions over the tables; the CLI, the routes and the Huey tasks call them. No HTTP here.
"""

from portal.exchange.exporter import ExportResult, export
from portal.exchange.importer import ImportRefused, import_file

__all__ = ["ExportResult", "ImportRefused", "export", "import_file"]
