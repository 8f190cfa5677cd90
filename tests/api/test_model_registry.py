"""One model registry: a model folder an interrupted `lightbox model train` left without weights is never the
version in use; the AI page, job routing and the CLI see the same list."""

from __future__ import annotations

import json
import shutil

import pytest

from portal.ai import registry
from portal.inference import jobs, models
from portal.tables import Series
from tests.helpers import creds, make_project

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _half_trained(settings, version: str, *, weights: bytes | None = None):
    """A folder as an interrupted training leaves it: the manifest of a newer version, no (or broken) weights."""
    folder = settings.data_dir / "models" / "lightbox-quality" / version
    folder.mkdir(parents=True)
    manifest = json.loads((registry.builtin_model_dir() / "manifest.json").read_text())
    manifest["version"] = version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if weights is not None:
        (folder / "model.pt").write_bytes(weights)
    return folder


async def test_a_folder_without_weights_never_becomes_in_use(app, client, settings, tmp_path):
    newest = registry.builtin_model_dir().name
    _half_trained(settings, "9.0.0")
    _half_trained(settings, "9.1.0", weights=b"")  # empty file
    _half_trained(settings, "9.2.0", weights=b"not a zip, and not the manifest's sha256")
    assert [m["version"] for m in models.installed()][0] == newest
    visible, in_use = models.for_project("p")
    assert in_use["lightbox-quality"]["version"] == newest
    assert not {"9.0.0", "9.1.0", "9.2.0"} & {m["version"] for m in visible}
    assert models.next_version("lightbox-quality") != "9.0.1"

    # A job queued now names the usable version, and its model folder holds weights.
    p = await make_project("p", {"rev": "reviewer"})
    from portal.dicom import samples

    f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm")
    with open(f, "rb") as fh:
        r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data={"Project": "p"},
                              files={"file": ("a.dcm", fh)})
    series = await Series.objects().get(Series.series_instance_uid == r.json()["SeriesInstanceUID"])
    job, _ = await jobs.request(p, series)
    assert job["model_version"] == newest
    ctx = await jobs.start(job["id"])
    assert (registry.load_manifest(ctx["model_dir"]).model_path).stat().st_size > 0


async def test_a_complete_added_version_is_used(app, settings):
    dest = settings.data_dir / "models" / "lightbox-quality" / "9.3.0"
    shutil.copytree(registry.builtin_model_dir(), dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["version"] = "9.3.0"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    assert models.manifest_for("lightbox-quality")["version"] == "9.3.0"
    assert models.model_dir("lightbox-quality") == str(dest)
