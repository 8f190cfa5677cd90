"""Real DICOM peers for tests: dcmtk's storescp as a destination, Orthanc (Debian's package) as a PACS with DICOMweb.

Import the fixtures into a test module: `from tests.network import orthanc, storescp  # noqa: F401`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


async def dcmtk(*args, ok: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(*map(str, args), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if ok:
        assert proc.returncode == 0, text
    return text


@pytest.fixture
def storescp(tmp_path):
    """dcmtk's storescp as AE title DEST on a free port: (port, folder where what it receives lands)."""
    if not shutil.which("storescp"):
        pytest.skip("dcmtk's storescp is not installed (apt-get install dcmtk)")
    port, out = free_port(), tmp_path / "storescp"
    out.mkdir()
    proc = subprocess.Popen(["storescp", "-aet", "DEST", "-od", str(out), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield port, out
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def orthanc(tmp_path):
    """Orthanc with its DICOMweb plugin on free ports, its own config and storage in tmp_path (so two test runs,
    one per backend, can run side by side); yields its HTTP base URL."""
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if not binary or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (apt-get install orthanc orthanc-dicomweb)")
    http_port, dicom_port = free_port(), free_port()
    root = tmp_path / "orthanc"
    (root / "db").mkdir(parents=True)
    config = {"Name": "lightbox-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
              "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC",
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": False,
              "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
              "StorageCompression": False, "HttpTimeout": 60}
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    proc = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(http_port, 30)
        yield f"http://127.0.0.1:{http_port}"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
