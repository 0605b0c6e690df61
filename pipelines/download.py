"""Download corpus archives: a registry of known archives with their published checksums, resumable HTTP
transfers, checksum verification, and extraction that cannot write outside the destination.

Transfers use urllib.request from the standard library: all we need is GET with a Range header, and an HTTP
client package (requests, httpx) would be one more pinned dependency for no gain.

What appears under dest, per archive `<file>`:
  `<file>.part`          while downloading; a rerun resumes from its size
  `<file>`               once complete and verified (renamed from .part, so it is never half-written)
  `<file>.sha256`        only where no published checksum exists: what we computed, so that a later run can
                         tell a damaged file from the one first downloaded
  `.<file>.extracted`    once extracted: JSON naming the top-level paths it produced
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import re
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from stores.config import Registry, parse_name, parse_positive_float, parse_positive_int
from stores.errors import ConfigError, DownloadError, NotFoundError

log = logging.getLogger(__name__)

_USER_AGENT = "specstore-download/0.1"
_BACKOFF_S = 1.0  # first wait after a failed attempt that received nothing; doubles each time


@dataclass(frozen=True)
class Archive:
    """One downloadable file. `checksum` is "md5:<hex>" or "sha256:<hex>", None where none is published."""

    name: str
    url: str
    checksum: str | None
    size: int | None = None  # bytes as published, for planning disk space; the checksum is what is checked
    extract_to: str = ""  # what extraction creates under dest, for people reading `specstore download`


ARCHIVES: Registry[Archive] = Registry("archive")

# LibriSpeech (OpenSLR SLR12). md5 values as OpenSLR publishes them (resources/12/md5sum.txt), checked
# against independent public download scripts that carry the same values.
_OPENSLR_12 = "https://www.openslr.org/resources/12/"
_LIBRISPEECH_MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
# VoiceBank-DEMAND (Edinburgh DataShare, handle 10283/2791, doi:10.7488/ds/2117). DataShare shows an MD5 per
# file; these are the values public download scripts pin. The old handle 10283/1942 is superseded.
_DATASHARE_2791 = "https://datashare.ed.ac.uk/bitstream/handle/10283/2791/"
_VOICEBANK = {
    "clean-testset": ("clean_testset_wav", "34eb1c0ba7ef667e9b966866c542fc16", None),
    "noisy-testset": ("noisy_testset_wav", "fb1b86caa31e8ba5b506c0c64da9aab5", None),
    "clean-trainset-28spk": ("clean_trainset_28spk_wav", "d2d5a45ec32f8fcbf201bde0447e20ba", 2_486_057_279),
    "noisy-trainset-28spk": ("noisy_trainset_28spk_wav", "1fca9e8bafb8cd069f6653c6d92f9e9c", 2_830_205_201),
}

for _subset, _md5 in _LIBRISPEECH_MD5.items():
    ARCHIVES.register(f"librispeech-{_subset}")(
        Archive(
            name=f"librispeech-{_subset}",
            url=f"{_OPENSLR_12}{_subset}.tar.gz",
            checksum=f"md5:{_md5}",
            size=337_926_286 if _subset == "dev-clean" else None,
            extract_to=f"LibriSpeech/{_subset}/",
        )
    )
for _key, (_stem, _md5, _size) in _VOICEBANK.items():
    ARCHIVES.register(f"voicebank-demand-{_key}")(
        Archive(
            name=f"voicebank-demand-{_key}",
            url=f"{_DATASHARE_2791}{_stem}.zip",
            checksum=f"md5:{_md5}",
            size=_size,
            extract_to=f"{_stem}/",
        )
    )

# One name that fetches several archives.
GROUPS: dict[str, tuple[str, ...]] = {
    "voicebank-demand-test": ("voicebank-demand-clean-testset", "voicebank-demand-noisy-testset"),
    "voicebank-demand": tuple(f"voicebank-demand-{key}" for key in _VOICEBANK),
}


class _Retry(Exception):
    """The transfer stopped short or cannot be used as sent; the next attempt resumes or restarts."""


# Errors after which another attempt may succeed. HTTPException covers IncompleteRead and
# RemoteDisconnected; ConnectionError covers ConnectionResetError; TimeoutError is socket.timeout.
_TRANSIENT = (_Retry, http.client.HTTPException, ConnectionError, TimeoutError)


def parse_checksum(value: object) -> tuple[str, str]:
    """Parse md5:<hex>, sha256:<hex> or bare hex (32 digits: md5, 64: sha256) -> (algorithm, lowercase hex)."""
    text = str(value).strip().lower()
    algo, _, digest = text.rpartition(":")
    algo = algo or {32: "md5", 64: "sha256"}.get(len(digest), "")
    expected_len = {"md5": 32, "sha256": 64}.get(algo)
    if expected_len is None or not re.fullmatch(f"[0-9a-f]{{{expected_len}}}", digest):
        raise ConfigError(f"Expected a checksum as md5:<32 hex> or sha256:<64 hex>. Got {value!r} instead.")
    return algo, digest


def file_digest(path: Path, algo: str, block: int = 1 << 20) -> str:
    # usedforsecurity=False: md5 here detects damaged downloads, and FIPS-mode Pythons refuse it otherwise.
    digest = hashlib.new(algo, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    name_or_url: str,
    dest: str | Path,
    *,
    checksum: str | None = None,
    mirror: str | None = None,
    extract: bool = True,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60,
) -> list[Path]:
    """Fetch a registry archive, a group of them, or an http(s) URL into dest; verify, then extract.

    Returns the extracted top-level paths (or the downloaded files where extract=False or the file is not an
    archive). A rerun does no network work for what is already complete.
    """
    parse_positive_int(chunk_size, "chunk_size")
    parse_positive_float(timeout, "timeout")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"Expected retries to be a non-negative integer. Got {retries!r} instead.")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for url, expected in _resolve(name_or_url, checksum, mirror):
        out += _download_one(url, dest, expected, extract, progress, chunk_size, retries, timeout)
    return out


def _is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme in ("http", "https")


def _resolve(name_or_url: str, checksum: str | None, mirror: str | None) -> list[tuple[str, str | None]]:
    """-> [(url, checksum or None)]. An explicit checksum overrides the registry's (one archive only)."""
    if mirror is not None and not _is_url(mirror):
        raise ConfigError(f"Expected --mirror to be an http(s) URL. Got {mirror!r} instead.")
    if _is_url(name_or_url):
        pairs = [(name_or_url, checksum)]
    elif name_or_url in GROUPS:
        if checksum is not None:
            raise ConfigError(
                f"Expected no checksum for the group {name_or_url!r}. Got {checksum!r} instead."
            )
        pairs = [(ARCHIVES.get(n).url, ARCHIVES.get(n).checksum) for n in GROUPS[name_or_url]]
    elif name_or_url in ARCHIVES:
        archive = ARCHIVES.get(name_or_url)
        pairs = [(archive.url, checksum or archive.checksum)]
    else:
        raise NotFoundError(
            f"Expected an archive name ({', '.join(ARCHIVES.names())}), a group ({', '.join(sorted(GROUPS))}) "
            f"or an http(s) URL. Got {name_or_url!r} instead."
        )
    if mirror is not None:
        pairs = [(f"{mirror.rstrip('/')}/{_basename(url)}", c) for url, c in pairs]
    for _, c in pairs:
        if c is not None:
            parse_checksum(c)
    return pairs


def _basename(url: str) -> str:
    # Only the URL's path names the file (DataShare links carry "?sequence=1" queries); it must be a plain
    # file name so that it cannot point outside dest.
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    return parse_name(name, f"file name at the end of the URL {url!r}")


def _download_one(url, dest, checksum, extract, progress, chunk_size, retries, timeout) -> list[Path]:
    final = dest / _basename(url)
    marker = dest / f".{final.name}.extracted"
    if extract and marker.exists():
        # Checked before the archive itself: people delete multi-GB archives once they are extracted.
        log.info("%s: already downloaded and extracted", final.name)
        return [dest / root for root in json.loads(marker.read_text())["roots"]]
    sidecar = final.with_name(final.name + ".sha256")
    if checksum is None and final.exists() and sidecar.exists():
        checksum = "sha256:" + (sidecar.read_text().split() or ["(empty sidecar)"])[0]
    if not _already_complete(final, checksum):
        part = final.with_name(final.name + ".part")
        _fetch(url, part, progress, chunk_size, retries, timeout)
        if checksum is not None:
            _verify(part, checksum, url)
        os.replace(part, final)  # atomic: `final` exists only once complete and verified
    if checksum is None:
        digest = file_digest(final, "sha256")
        _write_atomic(sidecar, f"{digest}  {final.name}\n")
        log.warning(
            "%s: NOT VERIFIED against a published checksum (none known); recorded sha256 %s in %s",
            final.name,
            digest,
            sidecar.name,
        )
    if not extract or not _is_archive(final):
        return [final]
    roots = _extract(final, dest)
    _write_atomic(marker, json.dumps({"archive": final.name, "roots": roots}) + "\n")
    return [dest / root for root in roots]


def _already_complete(final: Path, checksum: str | None) -> bool:
    if not final.exists():
        return False
    if checksum is not None:
        algo, expected = parse_checksum(checksum)
        if file_digest(final, algo) != expected:
            log.warning("%s: exists but its checksum does not match; downloading it again", final.name)
            final.unlink()
            return False
    log.info("%s: already downloaded", final.name)
    return True


def _verify(part: Path, checksum: str, url: str) -> None:
    algo, expected = parse_checksum(checksum)
    got = file_digest(part, algo)
    if got != expected:
        part.unlink()  # a resumed retry would only append to the wrong bytes
        raise DownloadError(f"Checksum mismatch for {url}: expected {algo}:{expected}, got {algo}:{got}.")


def _fetch(url: str, part: Path, progress: bool, chunk_size: int, retries: int, timeout: float) -> None:
    """Download url into part, resuming from part's size; retry transient failures up to `retries` times."""
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, progress, chunk_size, timeout)
            return
        except urllib.error.HTTPError as e:  # before URLError and OSError: it is a subclass of both
            e.close()
            if e.code < 500:  # 404, 403...: asking again will not help
                raise DownloadError(f"Download of {url} failed: HTTP {e.code} {e.reason}.") from None
            error: Exception = e
        except urllib.error.URLError as e:
            if not isinstance(e.reason, OSError):  # e.g. an unknown URL type, not a network failure
                raise DownloadError(f"Download of {url} failed: {e.reason}.") from None
            error = e
        except _TRANSIENT as e:
            error = e
        failures += 1
        if failures > retries:
            reason = str(error) or type(error).__name__
            raise DownloadError(f"Download of {url} failed after {failures} attempts: {reason}.")
        log.warning("%s: %s; retrying (%d of %d)", url, str(error) or type(error).__name__, failures, retries)
        if (part.stat().st_size if part.exists() else 0) <= before:
            # Nothing arrived: the server or network is down, so wait. A transfer that broke off after
            # making progress resumes at once.
            time.sleep(_BACKOFF_S * 2 ** (failures - 1))


def _fetch_once(url: str, part: Path, progress: bool, chunk_size: int, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            e.close()
            _range_not_satisfiable(e.headers.get("Content-Range", ""), part, offset)
            return
        raise
    with response:
        offset, total = _start_and_total(response, part, offset)
        received = offset
        with (
            part.open("ab" if offset else "wb") as out,
            tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=part.stem, disable=not progress
            ) as bar,
        ):
            while chunk := response.read(chunk_size):
                out.write(chunk)
                bar.update(len(chunk))
                received += len(chunk)
    # urllib returns b"" when the connection closes early instead of raising, so compare with the length.
    if total is not None and received < total:
        raise _Retry(f"transfer stopped at byte {received} of {total}")


def _start_and_total(response, part: Path, offset: int) -> tuple[int, int | None]:
    """Where this response's body starts in the file, and the file's full size where the server says."""
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != offset:
            part.unlink(missing_ok=True)  # a range we did not ask for: start over cleanly
            raise _Retry(
                f"server answered Range bytes={offset}- with {response.headers.get('Content-Range')!r}"
            )
        return offset, None if match[2] == "*" else int(match[2])
    if offset:
        log.info("%s: server ignored the Range request; restarting from byte 0", part.name)
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _range_not_satisfiable(content_range: str, part: Path, offset: int) -> None:
    # 416 for "bytes=<size>-" means the .part already holds the whole file (say, a run stopped before the
    # rename) or the file on the server changed. The checksum check that follows tells which.
    match = re.fullmatch(r"bytes \*/(\d+)", content_range.strip())
    if match is None or int(match[1]) != offset:
        part.unlink()
        raise _Retry(f"server has no bytes from {offset} on (Content-Range {content_range!r}); restarting")


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar", ".zip"))


def _extract(archive: Path, dest: Path) -> list[str]:
    """Extract into dest; -> the sorted top-level names created. Refuses members that would land outside."""
    try:
        extract = _extract_zip if archive.name.endswith(".zip") else _extract_tar
        roots = extract(archive, dest)
    except (tarfile.ReadError, zipfile.BadZipFile, EOFError) as e:
        raise DownloadError(f"Could not extract {archive}: not a readable archive ({e}).") from None
    roots -= {None, "__MACOSX"}  # resource forks that macOS zip tools add; not part of the corpus
    return sorted(roots)


def _check_member(name: str, archive: Path) -> str | None:
    """-> the member's top-level name (None for "./"); refuses absolute paths and "..", not just strips them."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if (parts and parts[0] == "/") or ".." in parts or re.match(r"^[A-Za-z]:", name):
        raise DownloadError(f"Refusing to extract {archive}: member {name!r} would be written outside dest.")
    return parts[0] if parts else None


def _extract_tar(archive: Path, dest: Path) -> set[str]:
    roots: set[str] = set()

    def checked(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        roots.add(_check_member(member.name, archive))
        # The "data" filter also refuses links pointing outside dest, device files and setuid bits.
        return tarfile.data_filter(member, path)

    log.info("%s: extracting", archive.name)
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(dest, filter=checked)  # streams: one pass over a multi-GB .tar.gz
        except tarfile.FilterError as e:
            raise DownloadError(f"Refusing to extract {archive}: {e}.") from None
    return roots


def _extract_zip(archive: Path, dest: Path) -> set[str]:
    log.info("%s: extracting", archive.name)
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        roots = {_check_member(m.filename, archive) for m in members}  # all checked before writing any
        for m in members:
            if not (dest / m.filename).resolve().is_relative_to(root):  # e.g. through a symlinked folder
                raise DownloadError(f"Refusing to extract {archive}: member {m.filename!r} leaves dest.")
        zf.extractall(dest)
    return roots


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `specstore download`."""
    parser.add_argument(
        "names",
        nargs="+",
        help=f"archive names, groups ({', '.join(sorted(GROUPS))}) or http(s) URLs; archives: "
        + ", ".join(ARCHIVES.names()),
    )
    parser.add_argument("--dest", required=True, help="folder to download (and extract) into")
    parser.add_argument("--mirror", help="URL of a folder serving the same file names, used instead")
    parser.add_argument("--checksum", help="md5:<hex> or sha256:<hex> for a single name or URL")
    parser.add_argument("--no-extract", action="store_true", help="keep the archives packed")


def run(args: argparse.Namespace) -> int:
    """`specstore download`: fetch each name, print one line per resulting path."""
    if args.checksum is not None and len(args.names) > 1:
        raise ConfigError(f"Expected one name with --checksum. Got {len(args.names)} names instead.")
    for name in args.names:
        for path in download(
            name, args.dest, checksum=args.checksum, mirror=args.mirror, extract=not args.no_extract
        ):
            print(f"{name}: {path}")
    return 0
