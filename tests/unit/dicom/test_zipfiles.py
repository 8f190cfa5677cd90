"""stream_zip and safe_extract: streamed archives; traversal, links and bombs refused."""

from __future__ import annotations

import io
import stat
import struct
import zipfile

import pytest

from portal.dicom import safe_extract, stream_zip
from portal.errors import Invalid

MB = 1 << 20


def test_stream_zip_round_trip(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (3 * MB // 256))
    small = tmp_path / "small.dcm"
    small.write_bytes(b"DICM" * 10)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    entries = [("study/series/1.dcm", big), ("study/series/2.dcm", small), ("/../empty.txt", empty)]

    chunks = list(stream_zip(entries, chunk_size=64 * 1024))
    assert len(chunks) > 10
    assert max(len(c) for c in chunks) < 2 * 64 * 1024 + 4096  # never the whole archive at once

    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["study/series/1.dcm", "study/series/2.dcm", "empty.txt"]
        assert zf.read("study/series/1.dcm") == big.read_bytes()
        assert zf.read("study/series/2.dcm") == small.read_bytes()
        assert zf.read("empty.txt") == b""


def _zip(tmp_path, members, name="upload.zip"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def test_extracts_regular_members_under_sanitized_names(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("x.dcm", b"inner")
    path = _zip(tmp_path, [
        ("study/", b""),
        ("study/a b.dcm", b"A" * 1000),
        ("study/sub/b.dcm", b"B"),
        ("__MACOSX/study/._a b.dcm", b"junk"),
        ("nested.zip", inner.getvalue()),
    ])
    out = tmp_path / "out"
    files = safe_extract(path, out)
    assert [f.name for f in files] == ["00001-a_b.dcm", "00002-b.dcm", "00003-nested.zip"]
    assert all(f.parent == out for f in files)
    assert files[0].read_bytes() == b"A" * 1000
    assert files[2].read_bytes() == inner.getvalue()  # nested zips stay zipped


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm", "..\\evil.dcm"])
def test_rejects_paths_leaving_the_folder(tmp_path, name):
    path = _zip(tmp_path, [("ok.dcm", b"fine"), (name, b"evil")])
    with pytest.raises(Invalid) as exc:
        safe_extract(path, tmp_path / "out")
    assert exc.value.suberror == "unsafe_zip"
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.dcm").exists()


def test_rejects_symlink_member(tmp_path):
    link = zipfile.ZipInfo("link.dcm")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _zip(tmp_path, [(link, "/etc/passwd")])
    with pytest.raises(Invalid) as exc:
        safe_extract(path, tmp_path / "out")
    assert exc.value.suberror == "unsafe_zip"


def test_rejects_too_many_members(tmp_path):
    path = _zip(tmp_path, [(f"{i}.dcm", b"x") for i in range(11)])
    with pytest.raises(Invalid) as exc:
        safe_extract(path, tmp_path / "out", max_members=10)
    assert exc.value.suberror == "unsafe_zip"


def test_rejects_zip_bomb_before_writing(tmp_path):
    # 300 MB of zeros deflate to a few hundred KB.
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("zeros.dcm", "w") as member:
            block = bytes(MB)
            for _ in range(300):
                member.write(block)
    assert path.stat().st_size < 5 * MB
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Invalid) as exc:
        safe_extract(path, out, max_total_bytes=100 * MB)
    assert exc.value.suberror == "zip_too_large"
    assert list(out.iterdir()) == []  # nothing written, folder it did not create kept


def _understate_sizes(data: bytes, real: int, claimed: int) -> bytes:
    """Rewrite every size field equal to `real` (local and central headers) to `claimed`."""
    buf = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = buf.find(sig)
        while pos != -1:
            if struct.unpack_from("<I", buf, pos + offset)[0] == real:
                struct.pack_into("<I", buf, pos + offset, claimed)
            pos = buf.find(sig, pos + 4)
    return bytes(buf)


def test_lying_headers_do_not_write_past_the_limit(tmp_path):
    # Each member claims 1 KB but inflates to 20 MB; the limit is 10 MB.
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(3):
            zf.writestr(f"{i}.dcm", bytes(20 * MB))
    path = tmp_path / "liar.zip"
    path.write_bytes(_understate_sizes(raw.getvalue(), 20 * MB, 1024))
    out = tmp_path / "out"
    with pytest.raises(Invalid) as exc:
        safe_extract(path, out, max_total_bytes=10 * MB)
    assert exc.value.suberror in ("zip_too_large", "bad_zip")
    assert not out.exists()


def test_rejects_damaged_zip(tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(Invalid) as exc:
        safe_extract(path, tmp_path / "out")
    assert exc.value.suberror == "bad_zip"

