"""Where each DICOMweb resource of a project lives: the RetrieveURL and BulkDataURI values we hand out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Links:
    base: str  # e.g. "https://lightbox.example.org/dicomweb/chest", no trailing slash

    def study(self, study: str) -> str:
        return f"{self.base}/studies/{study}"

    def series(self, study: str, series: str) -> str:
        return f"{self.study(study)}/series/{series}"

    def instance(self, study: str, series: str, sop: str) -> str:
        return f"{self.series(study, series)}/instances/{sop}"

    def bulkdata(self, study: str, series: str, sop: str, tag: str) -> str:
        return f"{self.instance(study, series, sop)}/bulkdata/{tag}"
