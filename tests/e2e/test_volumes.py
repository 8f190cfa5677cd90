"""A reviewer uploads a NIfTI volume in the browser, finds it by its scan type, and views it: the stack, then MPR
with the planes laid out in patient space as the volume's affine says (issue 18)."""

import numpy as np
from playwright.sync_api import expect

from portal.dicom import volumes as V
from tests import volume_samples as vs
from tests.e2e.conftest import sign_in

GEOMETRY_JS = """
() => {
  const v = window.lightboxViewer;
  return v.viewportIds.map((id) => {
    const vp = v.engine.getViewport(id);
    const data = vp.getImageData();
    return { id, normal: Array.from(vp.getCamera().viewPlaneNormal), direction: Array.from(data.direction),
             origin: Array.from(data.origin), spacing: Array.from(data.spacing), dims: Array.from(data.dimensions) };
  });
}
"""


def test_upload_a_nifti_find_it_and_view_it_in_stack_and_mpr(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "nii"}).status_code == 201
    live_server.cli("user", "create", "rev", "--password", "rev-password-1")
    live_server.cli("project", "add-member", "nii", "rev", "--role", "reviewer")
    affine = vs.oblique_affine(20, spacing=(0.8, 0.9, 3.0))
    path = vs.nifti(tmp_path / "t1_mprage.nii.gz", vs.mr_pixels(), affine)

    sign_in(page, live_server, "rev", "rev-password-1")
    page.goto(live_server.url + "/projects/nii")
    page.get_by_role("button", name="Upload scans").click()
    page.set_input_files("#pick-files", [str(path)])
    expect(page.locator("#upload-summary")).to_contain_text("Done.", timeout=60000)
    expect(page.locator("#upload-summary")).to_contain_text("10 stored")

    # The studies table finds it by its name (the experiment of a volume sent without an import file).
    page.goto(live_server.url + "/projects/nii?q=t1_mprage")
    page.get_by_role("link", name="t1_mprage").first.click()
    page.get_by_role("link", name="t1_mprage").first.click()
    uid = V.series_uid("nii", "t1_mprage", "t1_mprage")
    page.wait_for_url(f"**/series/{uid}*")
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count === 10")
    expect(page.locator("#volume-source")).to_contain_text("t1_mprage.nii.gz")
    expect(page.locator("#volume-source")).to_contain_text("NIFTI")

    page.locator('#viewer [data-action="mpr"]').click()
    page.wait_for_function("() => window.lightboxViewer.getState().mode === 'mpr'")
    page.wait_for_function("() => window.lightboxViewer.viewportIds.every((id) => "
                           "window.lightboxViewer.engine.getViewport(id).getImageData())")
    views = {v["id"].rsplit("-", 1)[-1]: v for v in page.evaluate(GEOMETRY_JS)}
    assert set(views) == {"axial", "sagittal", "coronal"}
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    for v in views.values():
        # The volume the viewer built lies where nibabel says: same axes, origin and voxel size.
        direction = np.array(v["direction"]).reshape(3, 3)
        np.testing.assert_allclose(direction[0], lps[:3, 0] / np.linalg.norm(lps[:3, 0]), atol=1e-3)
        np.testing.assert_allclose(direction[1], lps[:3, 1] / np.linalg.norm(lps[:3, 1]), atol=1e-3)
        np.testing.assert_allclose(v["origin"], lps[:3, 3], atol=1e-3)
        np.testing.assert_allclose(v["spacing"], [0.8, 0.9, 3.0], atol=1e-3)
        assert v["dims"] == [64, 64, 10]
    # Each plane looks along its patient axis.
    for name, axis in (("axial", 2), ("sagittal", 0), ("coronal", 1)):
        normal = np.abs(np.array(views[name]["normal"]))
        assert normal.argmax() == axis and normal[axis] > 0.99, (name, views[name]["normal"])
    page.screenshot(path=str(tmp_path / "nifti-mpr.png"), full_page=True)
