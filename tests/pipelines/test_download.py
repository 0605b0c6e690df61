"""pipelines.download against a local HTTP server: resume, restart, checksums, safe extraction, idempotence."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import logging
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines import download as dl
from stores.config import Registry
from stores.errors import ConfigError, DownloadError, NotFoundError


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files from server.root; supports "Range: bytes=N-", and can misbehave on request."""

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        path = srv.root / Path(self.path.split("?")[0]).name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, range_header = 0, self.headers.get("Range")
        if range_header and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header)[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if len(srv.requests) <= srv.cut_first:  # announce the full length, send less, hang up
            body = body[: srv.cut_after]
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.root, httpd.requests = root, []
    httpd.ignore_range, httpd.cut_first, httpd.cut_after = False, 0, 0
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(dl, "_BACKOFF_S", 0.0)


def _audio(seed: int, rate: int, fmt: str) -> bytes:
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, rate // 4).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


LIBRI = {  # LibriSpeech layout: LibriSpeech/<subset>/<speaker>/<chapter>/
    "LibriSpeech/dev-clean/84/121123/84-121123-0000.flac": _audio(0, 16000, "FLAC"),
    "LibriSpeech/dev-clean/84/121123/84-121123-0001.flac": _audio(1, 16000, "FLAC"),
    "LibriSpeech/dev-clean/84/121123/84-121123.trans.txt": b"84-121123-0000 GO\n84-121123-0001 STOP\n",
}
VOICEBANK = {  # VoiceBank-DEMAND layout: one folder named like the zip
    "clean_testset_wav/p232_001.wav": _audio(2, 48000, "WAV"),
    "clean_testset_wav/p232_002.wav": _audio(3, 48000, "WAV"),
}


def _serve(server, name: str, data: bytes) -> str:
    (server.root / name).write_bytes(data)
    return "md5:" + hashlib.md5(data).hexdigest()


def test_registry_names_urls_and_checksums():
    subsets = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360")
    for subset in (*subsets, "train-other-500"):
        archive = dl.ARCHIVES.get(f"librispeech-{subset}")
        assert archive.url == f"https://www.openslr.org/resources/12/{subset}.tar.gz"
        dl.parse_checksum(archive.checksum)
    assert dl.ARCHIVES.get("librispeech-dev-clean").checksum == "md5:42e2234ba48799c1f50f24a7926300a1"
    for name in dl.GROUPS["voicebank-demand"]:
        assert dl.ARCHIVES.get(name).url.startswith("https://datashare.ed.ac.uk/bitstream/handle/10283/2791/")
    assert set(dl.GROUPS["voicebank-demand-test"]) < set(dl.GROUPS["voicebank-demand"])
    with pytest.raises(ConfigError, match="Expected a checksum"):
        dl.parse_checksum("md5:xyz")


def test_full_download_and_extraction_via_mirror(server, tmp_path):
    checksum = _serve(server, "dev-clean.tar.gz", _tar_gz(LIBRI))
    dest = tmp_path / "data"
    paths = dl.download(
        "librispeech-dev-clean", dest, mirror=server.url, checksum=checksum, progress=False, chunk_size=4096
    )
    assert paths == [dest / "LibriSpeech"]
    assert [r["path"] for r in server.requests] == ["/dev-clean.tar.gz"]
    for name, data in LIBRI.items():
        assert (dest / name).read_bytes() == data
    audio, rate = sf.read(dest / next(iter(LIBRI)))
    assert rate == 16000 and audio.shape == (4000,)
    assert (dest / "dev-clean.tar.gz").exists() and not (dest / "dev-clean.tar.gz.part").exists()
    assert not (dest / "dev-clean.tar.gz.sha256").exists()  # a published checksum was checked instead


@pytest.mark.parametrize("extract", [True, False])
def test_rerun_skips_the_download(server, tmp_path, extract):
    checksum = _serve(server, "dev-clean.tar.gz", _tar_gz(LIBRI))
    kwargs = dict(mirror=server.url, checksum=checksum, extract=extract, progress=False)
    dest = tmp_path / "data"
    first = dl.download("librispeech-dev-clean", dest, **kwargs)
    if extract:  # the marker alone says "done": no re-extraction, and the archive may have been deleted
        (dest / "dev-clean.tar.gz").unlink()
        (dest / next(iter(LIBRI))).unlink()
    second = dl.download("librispeech-dev-clean", dest, **kwargs)
    assert first == second
    assert len(server.requests) == 1
    if extract:
        assert not (dest / next(iter(LIBRI))).exists()


def test_resume_after_a_cut_connection(server, tmp_path):
    data = _tar_gz(LIBRI)
    checksum = _serve(server, "dev-clean.tar.gz", data)
    server.cut_first, server.cut_after = 1, 5000
    (path,) = dl.download(server.url + "dev-clean.tar.gz", tmp_path, checksum=checksum, extract=False)
    assert [r["range"] for r in server.requests] == [None, "bytes=5000-"]
    assert path.read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = _tar_gz(LIBRI)
    checksum = _serve(server, "dev-clean.tar.gz", data)
    server.cut_first, server.cut_after, server.ignore_range = 1, 5000, True
    (path,) = dl.download(server.url + "dev-clean.tar.gz", tmp_path, checksum=checksum, extract=False)
    assert [r["range"] for r in server.requests] == [None, "bytes=5000-"]
    assert path.read_bytes() == data  # appended, it would be 5000 bytes too long


def test_complete_part_file_answered_416_is_finished(server, tmp_path):
    data = _tar_gz(LIBRI)
    checksum = _serve(server, "dev-clean.tar.gz", data)
    (tmp_path / "dev-clean.tar.gz.part").write_bytes(data)  # a run that stopped just before the rename
    (path,) = dl.download(server.url + "dev-clean.tar.gz", tmp_path, checksum=checksum, extract=False)
    assert path.read_bytes() == data and server.requests[0]["range"] == f"bytes={len(data)}-"


def test_gives_up_after_the_retries(server, tmp_path):
    _serve(server, "dev-clean.tar.gz", _tar_gz(LIBRI))
    server.cut_first, server.cut_after = 99, 1000
    with pytest.raises(DownloadError, match="after 3 attempts"):
        dl.download(server.url + "dev-clean.tar.gz", tmp_path, retries=2, extract=False, progress=False)
    assert len(server.requests) == 3
    assert (tmp_path / "dev-clean.tar.gz.part").stat().st_size == 3000  # kept: the next run resumes
    assert not (tmp_path / "dev-clean.tar.gz").exists()


def test_checksum_mismatch_raises_and_leaves_no_file(server, tmp_path):
    data = _tar_gz(LIBRI)
    _serve(server, "dev-clean.tar.gz", data)  # not the real archive: the published md5 cannot match
    with pytest.raises(DownloadError) as err:
        dl.download("librispeech-dev-clean", tmp_path, mirror=server.url, progress=False)
    assert "expected md5:42e2234ba48799c1f50f24a7926300a1" in str(err.value)
    assert f"got md5:{hashlib.md5(data).hexdigest()}" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


def test_http_404_raises_with_url_and_status(server, tmp_path):
    url = server.url + "missing.tar.gz"
    with pytest.raises(DownloadError, match=rf"{re.escape(url)} failed: HTTP 404"):
        dl.download(url, tmp_path / "data", progress=False)
    assert len(server.requests) == 1  # a client error is not retried
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize(
    "name, build",
    [("evil.tar.gz", _tar_gz), ("evil.zip", _zip)],
)
@pytest.mark.parametrize("member", ["../evil.txt", "LibriSpeech/../../evil.txt", "/tmp/evil.txt"])
def test_archive_members_outside_dest_are_refused(server, tmp_path, name, build, member):
    _serve(server, name, build({"ok/a.txt": b"fine", member: b"pwned"}))
    dest = tmp_path / "a" / "data"
    with pytest.raises(DownloadError, match="Refusing to extract"):
        dl.download(server.url + name, dest, progress=False)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (dest / f".{name}.extracted").exists()


def test_unverified_download_records_sha256_and_warns(server, tmp_path, caplog):
    data = _zip(VOICEBANK)
    _serve(server, "clean_testset_wav.zip", data)
    with caplog.at_level(logging.WARNING, logger=dl.__name__):
        paths = dl.download(server.url + "clean_testset_wav.zip", tmp_path, progress=False)
    assert paths == [tmp_path / "clean_testset_wav"]
    sidecar = (tmp_path / "clean_testset_wav.zip.sha256").read_text()
    assert sidecar == f"{hashlib.sha256(data).hexdigest()}  clean_testset_wav.zip\n"
    assert "NOT VERIFIED" in caplog.text
    for name, payload in VOICEBANK.items():
        assert (tmp_path / name).read_bytes() == payload


def test_group_fetches_each_archive(server, tmp_path, monkeypatch):
    registry: Registry[dl.Archive] = Registry("archive")
    for stem in ("clean_testset_wav", "noisy_testset_wav"):
        members = {name.replace("clean_testset_wav", stem): data for name, data in VOICEBANK.items()}
        checksum = _serve(server, f"{stem}.zip", _zip(members))
        registry.register(stem)(dl.Archive(stem, f"https://example.invalid/x/{stem}.zip", checksum))
    monkeypatch.setattr(dl, "ARCHIVES", registry)
    monkeypatch.setattr(dl, "GROUPS", {"vb-test": ("clean_testset_wav", "noisy_testset_wav")})
    paths = dl.download("vb-test", tmp_path / "data", mirror=server.url, progress=False)
    assert paths == [tmp_path / "data" / "clean_testset_wav", tmp_path / "data" / "noisy_testset_wav"]
    assert (tmp_path / "data" / "noisy_testset_wav" / "p232_001.wav").exists()
    with pytest.raises(ConfigError, match="no checksum for the group"):
        dl.download("vb-test", tmp_path / "data", checksum="md5:" + "0" * 32)


def test_unknown_name_lists_valid_ones(tmp_path):
    with pytest.raises(NotFoundError) as err:
        dl.download("librispeech-dev-cleen", tmp_path)
    assert "librispeech-dev-clean" in str(err.value) and "voicebank-demand-test" in str(err.value)
    assert "'librispeech-dev-cleen'" in str(err.value)


def test_cli_arguments_and_run(server, tmp_path, capsys):
    checksum = _serve(server, "dev-clean.tar.gz", _tar_gz(LIBRI))
    parser = argparse.ArgumentParser()
    dl.add_arguments(parser)
    argv = ["librispeech-dev-clean", "--dest", str(tmp_path / "d"), "--mirror", server.url]
    args = parser.parse_args([*argv, "--checksum", checksum, "--no-extract"])
    assert dl.run(args) == 0
    assert capsys.readouterr().out == f"librispeech-dev-clean: {tmp_path / 'd' / 'dev-clean.tar.gz'}\n"
    with pytest.raises(ConfigError, match="one name with --checksum"):
        dl.run(parser.parse_args(["librispeech-test-clean", *argv, "--checksum", checksum]))
