"""``lifeboat store serve``: a backup point as a disk over HTTP and NBD, read by qemu-img and qemu-io.

The clients are QEMU's own (its curl driver for HTTP, its NBD client), the disk is a real GPT/ext4 image and
the checks compare against the original image file, byte for byte.
"""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from storage.repository import Repository
from storage.serve.disk import ServedDisk
from storage.serve.http import DiskHTTPServer
from tests import images
from tests.serving import ServeProcess, backed_up_disk, chunk_file, convert_args, data_chunks, http_image, qemu

from .diskdata import CHUNK, flip_bit

pytestmark = pytest.mark.skipif(
    not images.have("sfdisk", "mkfs.ext4", "qemu-img", "qemu-io", "nbdkit"),
    reason="needs sfdisk, mkfs.ext4, qemu-utils (with qemu-block-extra) and nbdkit (make sysdeps)",
)


@pytest.fixture(scope="module")
def _backed_up(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The image (built with sfdisk and mkfs) and its backup, made once for the module."""
    base = tmp_path_factory.mktemp("served")
    image, revision = backed_up_disk(base / "work", base / "root")
    return base / "root", image, revision


@pytest.fixture
def disk(root: Path, _backed_up: tuple[Path, Path, str]) -> tuple[Path, str]:
    """The image (only ever read here) and a copy of its repository of the test's own under ``root``: the
    tests damage chunks."""
    template, image, revision = _backed_up
    shutil.copytree(template, root)
    return image, revision


@pytest.fixture
def served(root: Path, disk: tuple[Path, str]) -> Iterator[ServeProcess]:
    with ServeProcess(str(root), "vm1", disk[1], "--http", "--nbd") as process:
        yield process


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        try:
            body = response.read()
        except http.client.IncompleteRead as exc:
            body = b"<cut short after %d bytes>" % len(exc.partial)
        return response.status, dict(response.getheaders()), body
    finally:
        connection.close()


@pytest.mark.slow
def test_qemu_img_reads_the_http_and_nbd_disk_byte_identical(tmp_path: Path, disk: tuple[Path, str],
                                                             served: ServeProcess) -> None:
    image, revision = disk
    for source in (http_image(served.urls["http"]), served.urls["nbd"]):
        compared = qemu("qemu-img", "compare", "-f", "raw", str(image), source)
        assert compared.returncode == 0 and "identical" in compared.stdout, compared.stderr
    out = tmp_path / "copy.img"
    for source in (http_image(served.urls["http"]), served.urls["nbd"]):
        converted = qemu("qemu-img", "convert", *convert_args(source), "-O", "raw", source, str(out))
        assert converted.returncode == 0, converted.stderr
        assert out.read_bytes() == image.read_bytes()
        out.unlink()
    report = served.stop()
    assert served.code == 0, served.stderr
    assert report["event"] == "stopped" and report["revision"] == revision and report["damaged"] == []


def test_nbd_export_reports_zero_chunks_as_holes(root: Path, disk: tuple[Path, str], served: ServeProcess) -> None:
    """qemu-img map through NBD shows exactly the manifest's zero chunks as zero (so copies stay sparse)."""
    import json

    mapped = qemu("qemu-img", "map", "--output=json", served.urls["nbd"])
    assert mapped.returncode == 0, mapped.stderr
    zero = [(e["start"], e["start"] + e["length"]) for e in json.loads(mapped.stdout) if e["zero"]]
    revision = Repository.open(str(root), "vm1").load_revision(disk[1])
    expected = [revision.chunk_range(i) for i, c in enumerate(revision.chunks) if c is None]
    assert expected, "the test disk must have zero chunks"
    covered = {i for s, e in zero for i in range(s // CHUNK, e // CHUNK)}
    assert covered == {s // CHUNK for s, _ in expected}


@pytest.mark.slow
def test_byte_range_edge_cases(disk: tuple[Path, str], served: ServeProcess) -> None:
    image = disk[0].read_bytes()
    size = len(image)
    url = served.urls["http"]

    status, headers, body = request(url, "HEAD")
    assert (status, headers["Content-Length"], headers["Accept-Ranges"], body) == (200, str(size), "bytes", b"")

    cases = {
        f"bytes={CHUNK - 10}-{CHUNK + 9}": (CHUNK - 10, CHUNK + 10),  # across a chunk boundary
        f"bytes={size - 1}-{size - 1}": (size - 1, size),  # the last byte
        "bytes=0-0": (0, 1),
        f"bytes={size - 100}-": (size - 100, size),  # open-ended
        "bytes=-4096": (size - 4096, size),  # suffix
        f"bytes=-{size * 2}": (0, size),  # suffix longer than the disk: all of it
        f"bytes={size - 10}-{size * 5}": (size - 10, size),  # end past the disk: clipped
        f"bytes={3 * CHUNK}-{5 * CHUNK - 1}": (3 * CHUNK, 5 * CHUNK),  # zero chunks
        f"bytes={2 * CHUNK + 5}-{4 * CHUNK + 6}": (2 * CHUNK + 5, 4 * CHUNK + 7),  # data into a hole
    }
    for header, (start, end) in cases.items():
        status, headers, body = request(url, headers={"Range": header})
        assert status == 206, header
        assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", header
        assert body == image[start:end], header
    status, _, body = request(url, "HEAD", {"Range": "bytes=10-19"})
    assert status == 206 and body == b""

    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0", "bytes=9-3", "bytes=0-1,5-9",
                   "items=0-5", "bytes=", "bytes=a-b", "bytes=-"):
        status, headers, _ = request(url, headers={"Range": header})
        assert (status, headers.get("Content-Range")) == (416, f"bytes */{size}"), header


@pytest.mark.slow
def test_whole_disk_get_and_wrong_paths(disk: tuple[Path, str], served: ServeProcess) -> None:
    url = served.urls["http"]
    status, _, body = request(url)
    assert status == 200 and body == disk[0].read_bytes()
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    secret = parts.path.split("/")[1]
    for wrong in (f"{base}/", f"{base}/{secret}", f"{base}/{secret[:-1]}x/disk.raw", f"{base}/disk.raw",
                  f"{base}/{secret}/disk.raw/..", f"{base}/{secret}/disk.raw?x=1"):
        assert request(wrong)[0] == 404, wrong
        assert request(wrong, "HEAD")[0] == 404, wrong
    assert request(url, "POST")[0] == 405
    assert request(f"{base}/", "PUT")[0] == 404


def test_an_expired_secret_is_404(root: Path, disk: tuple[Path, str]) -> None:
    repo = Repository.open(str(root), "vm1")
    server = DiskHTTPServer("127.0.0.1", 0, ServedDisk(repo, repo.resolve(disk[1])), expires_at=time.time() + 3600)
    server.start()
    try:
        assert request(server.url(), "HEAD")[0] == 200
        server.expires_at = time.time() - 1
        assert request(server.url(), "HEAD")[0] == 404
        assert request(server.url(), headers={"Range": "bytes=0-9"})[0] == 404
    finally:
        server.stop()


@pytest.mark.slow
def test_a_damaged_chunk_is_an_io_error_never_wrong_bytes(tmp_path: Path, root: Path, disk: tuple[Path, str],
                                                          served: ServeProcess) -> None:
    image, revision = disk
    original = image.read_bytes()
    damaged_index = data_chunks(root, "vm1", revision)[1]
    flip_bit(chunk_file(root, "vm1", revision, damaged_index))
    start, end = damaged_index * CHUNK, (damaged_index + 1) * CHUNK
    url = served.urls["http"]

    status, _, body = request(url, headers={"Range": f"bytes={start + 100}-{start + 199}"})
    assert status == 500 and f"bytes {start}-{end}" in body.decode()
    # Ranges beside the damage still read right.
    status, _, body = request(url, headers={"Range": f"bytes={start - 4096}-{start - 1}"})
    assert status == 206 and body == original[start - 4096 : start]
    status, _, body = request(url, headers={"Range": f"bytes={end}-{end + 4095}"})
    assert status == 206 and body == original[end : end + 4096]

    for source in (http_image(url), served.urls["nbd"]):
        out = tmp_path / "out.img"
        converted = qemu("qemu-img", "convert", *convert_args(source), "-O", "raw", source, str(out))
        assert converted.returncode != 0, source
        assert "Input/output error" in converted.stderr, converted.stderr
        read = qemu("qemu-io", "-r", "-f", "raw", "-c", f"read {start} 4096", source)
        assert "Input/output error" in read.stdout + read.stderr, source
        read = qemu("qemu-io", "-r", "-f", "raw", "-c", f"read -P 0 {3 * CHUNK} 65536", source)
        assert "read 65536/65536 bytes" in read.stdout, read.stdout + read.stderr

    report = served.stop()
    assert served.code == 1
    assert report["damaged"] == [[start, end]]


@pytest.mark.slow
def test_a_long_answer_is_cut_short_at_damage_past_its_verified_start(root: Path, disk: tuple[Path, str],
                                                                      served: ServeProcess) -> None:
    """Damage beyond the first 16 MiB of a whole-disk GET: the body ends early instead of holding zeros."""
    image, revision = disk
    last = data_chunks(root, "vm1", revision)[-1]
    assert last * CHUNK >= 16 * 2**20
    flip_bit(chunk_file(root, "vm1", revision, last))
    status, headers, body = request(served.urls["http"])
    assert status == 200 and int(headers["Content-Length"]) == len(image.read_bytes())
    assert body.startswith(b"<cut short after ")


@pytest.mark.slow
def test_zero_damaged_serves_zeros_and_reports_the_range(tmp_path: Path, root: Path, disk: tuple[Path, str]) -> None:
    image, revision = disk
    index = data_chunks(root, "vm1", revision)[0]
    flip_bit(chunk_file(root, "vm1", revision, index))
    with ServeProcess(str(root), "vm1", revision, "--zero-damaged") as served:
        out = tmp_path / "out.img"
        source = http_image(served.urls["http"])
        converted = qemu("qemu-img", "convert", *convert_args(source), "-O", "raw", source, str(out))
        assert converted.returncode == 0, converted.stderr
        report = served.stop()
    assert served.code == 1 and report["damaged"] == [[index * CHUNK, (index + 1) * CHUNK]]
    expected = bytearray(image.read_bytes())
    expected[index * CHUNK : (index + 1) * CHUNK] = bytes(CHUNK)
    assert out.read_bytes() == bytes(expected)


@pytest.mark.slow
def test_writable_nbd_keeps_writes_in_an_overlay(root: Path, disk: tuple[Path, str], lifeboat) -> None:
    image, revision = disk
    chunk_dir = root / "vm1" / "chunks"
    before = {p: p.read_bytes() for p in chunk_dir.rglob("*") if p.is_file()}
    with ServeProcess(str(root), "vm1", revision, "--nbd", "--writable") as served:
        assert "http" not in served.urls
        nbd = served.urls["nbd"]
        wrote = qemu("qemu-io", "-f", "raw", "-c", "write -P 0xab 1048576 65536", nbd)
        assert "wrote 65536/65536 bytes" in wrote.stdout, wrote.stdout + wrote.stderr
        read = qemu("qemu-io", "-r", "-f", "raw", "-c", "read -P 0xab 1048576 65536", nbd)
        assert "read 65536/65536 bytes" in read.stdout, read.stdout + read.stderr
        served.stop()
    assert served.code == 0, served.stderr
    assert {p: p.read_bytes() for p in chunk_dir.rglob("*") if p.is_file()} == before
    assert lifeboat("store", "verify", str(root), "vm1").code == 0
    with ServeProcess(str(root), "vm1", revision, "--nbd") as again:
        compared = qemu("qemu-img", "compare", "-f", "raw", str(image), again.urls["nbd"])
        assert compared.returncode == 0, compared.stdout + compared.stderr


def test_a_read_only_nbd_export_refuses_writes(served: ServeProcess) -> None:
    wrote = qemu("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 4096", served.urls["nbd"])
    assert "wrote" not in wrote.stdout
    assert "read-only" in (wrote.stdout + wrote.stderr).lower() or "permission" in (wrote.stdout + wrote.stderr).lower()


def test_a_wrong_nbd_export_name_is_refused(served: ServeProcess) -> None:
    url = served.urls["nbd"]
    wrong = url.rsplit("/", 1)[0] + "/guess"
    assert qemu("qemu-img", "info", wrong).returncode != 0
    assert qemu("qemu-img", "info", url.rsplit("/", 1)[0]).returncode != 0  # the default export is no way in


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--http", "nonsense"], ["invalid address"]),
        (["--http", "127.0.0.1:99999"], ["invalid address"]),
        (["--writable"], ["--writable needs --nbd"]),
    ],
)
def test_bad_input_is_one_line(root: Path, disk: tuple[Path, str], lifeboat, args: list[str],
                               words: list[str]) -> None:
    done = lifeboat("store", "serve", str(root), "vm1", disk[1], *args, timeout=30)
    assert done.code == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), done.stderr


def test_unknown_revision_is_one_line(root: Path, disk: tuple[Path, str], lifeboat) -> None:
    done = lifeboat("store", "serve", str(root), "vm1", "20990101T000000Z-abcdef", timeout=30)
    assert done.code == 2 and "no revision" in done.stderr and len(done.stderr.strip().splitlines()) == 1
