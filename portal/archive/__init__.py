"""The image archive: patients, studies, series and instances of a project; ingest and queries."""

from portal.archive.ingest import IngestResult, ingest_file, ingest_path, storage
from portal.archive.queries import (
    count_instances,
    delete_patient,
    delete_series,
    delete_study,
    find_instance,
    find_patient,
    find_series,
    find_study,
    instances_of,
    series_of_study,
    studies_of_patient,
)

__all__ = [
    "IngestResult", "count_instances", "delete_patient", "delete_series", "delete_study", "find_instance", "find_patient",
    "find_series", "find_study", "ingest_file", "ingest_path", "instances_of", "series_of_study", "storage",
    "studies_of_patient",
]
