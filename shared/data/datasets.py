"""Built-in MovieLens datasets: a registry, checksum-verified download and an offline cache."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from fedrec.shared.errors import DataError, DownloadError

_CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0


def print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from, which files of it are kept (with their sha256) and how to read its ratings."""

    name: str
    url: str
    archive_sha256: str | None
    members: dict[str, str]
    archive_prefix: str
    ratings_file: str
    sep: str
    has_header: bool = False
    rating_min: float = 1.0
    rating_max: float = 5.0
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        # Every kept file is verified, so the ratings file must be one of them.
        if self.ratings_file not in self.members:
            raise DataError(
                f"dataset {self.name!r}: ratings file {self.ratings_file!r} has no pinned sha256 in members"
            )
        for member in self.members:
            parts = PurePosixPath(member).parts
            # A member path is joined onto the cache folder: refuse anything that could escape it.
            if not parts or PurePosixPath(member).is_absolute() or ".." in parts:
                raise DataError(
                    f"dataset {self.name!r}: member path {member!r} must be relative and inside the dataset folder"
                )


# Member hashes come from /work/shared/data/movielens/SOURCES.md, where each was checked against
# independent public pins. ml-1m's README has no independent pin, so it is not kept.
REGISTRY: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        archive_sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        members={
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
        },
        archive_prefix="ml-100k/",
        ratings_file="u.data",
        sep="\t",
        rating_min=1.0,
        rating_max=5.0,
        encoding="latin-1",  # u.item is ISO-8859-1
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        archive_sha256=None,  # no trustworthy pin for the zip; the member hashes carry the verification
        members={
            "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
            "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
            "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
        },
        archive_prefix="ml-1m/",
        ratings_file="ratings.dat",
        sep="::",
        rating_min=1.0,
        rating_max=5.0,
        encoding="latin-1",  # movies.dat is ISO-8859-1
    ),
    "ml-latest-small": DatasetSpec(
        name="ml-latest-small",
        url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        archive_sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        members={
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            # Kept because the licence lets this set be redistributed only together with its README.
            "README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
        },
        archive_prefix="ml-latest-small/",
        ratings_file="ratings.csv",
        sep=",",
        has_header=True,
        rating_min=0.5,
        rating_max=5.0,
        encoding="utf-8",
    ),
}


def get_spec(name_or_spec: str | DatasetSpec) -> DatasetSpec:
    """Look a dataset up by name; a `DatasetSpec` is returned unchanged."""
    if isinstance(name_or_spec, DatasetSpec):
        return name_or_spec
    try:
        return REGISTRY[name_or_spec]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise DataError(f"unknown dataset {name_or_spec!r}; known datasets: {known}") from None


def default_data_dir() -> Path:
    """`$FEDREC_DATA_DIR`, else `$XDG_CACHE_HOME/fedrec`, else `~/.cache/fedrec`."""
    if explicit := os.environ.get("FEDREC_DATA_DIR"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "fedrec"
    return Path.home() / ".cache" / "fedrec"


def fetch(
    name_or_spec: str | DatasetSpec,
    data_dir: Path | None = None,
    *,
    log: Callable[[str], None] = print_to_stderr,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Return the path of the dataset's verified ratings file, downloading the dataset only if a file is missing.

    Files live at `<data_dir>/<name>/<member>`. Files already present are verified and never re-fetched;
    missing ones are downloaded, verified in temporary files and moved into place atomically.
    """
    spec = get_spec(name_or_spec)
    folder = Path(data_dir if data_dir is not None else default_data_dir()) / spec.name

    missing = []
    for member, expected in spec.members.items():
        path = folder / member
        if not path.is_file():
            missing.append(member)
            continue
        actual = _sha256_of_file(path)
        if actual != expected:
            raise DataError(
                f"{path}: sha256 is {actual}, expected {expected}; the file is corrupt or a different "
                f"version of {spec.name}. Delete it to download it again."
            )
    if missing:
        _download_members(spec, folder, missing, log, timeout)
    return folder / spec.ratings_file


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def _download_members(
    spec: DatasetSpec, folder: Path, missing: list[str], log: Callable[[str], None], timeout: float
) -> None:
    # Connect before touching the disk, so an offline machine is left exactly as it was.
    response = _open_url(spec.url, timeout)
    temp_paths: list[Path] = []
    created_dirs: list[Path] = []
    try:
        with response:
            created_dirs += _make_dirs(folder)
            archive = _new_temp(folder, ".zip.part", temp_paths)
            with open(archive, "wb") as out:
                archive_sha256 = _copy_response(response, out, spec, log)
        if spec.archive_sha256 is not None and archive_sha256 != spec.archive_sha256:
            raise DownloadError(
                f"{spec.url}: archive sha256 is {archive_sha256}, expected {spec.archive_sha256}; "
                "the download is corrupt or the server sent a different file"
            )
        staged = _extract_verified(spec, archive, folder, missing, temp_paths, created_dirs)
        for member, temp in staged.items():
            os.replace(temp, folder / member)
            temp_paths.remove(temp)
    except OSError as exc:
        _cleanup(temp_paths, created_dirs)
        raise DataError(f"cannot write {spec.name} into {folder}: {exc.strerror or exc}") from exc
    except BaseException:
        # Any failure (including Ctrl-C) must leave no partial files behind.
        _cleanup(temp_paths, created_dirs)
        raise
    _cleanup(temp_paths, [])  # only the downloaded archive is left at this point
    log(f"fedrec: {spec.name}: verified {len(missing)} file(s) in {folder}")


def _open_url(url: str, timeout: float) -> http.client.HTTPResponse:
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: download failed with HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: download failed: {exc.reason}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"{url}: download failed: {exc}") from exc


def _copy_response(
    response: http.client.HTTPResponse, out: BinaryIO, spec: DatasetSpec, log: Callable[[str], None]
) -> str:
    length = response.headers.get("Content-Length")
    expected_size = int(length) if length and length.isdigit() else None
    size_text = f" ({expected_size / 1e6:.1f} MB)" if expected_size is not None else ""
    log(f"fedrec: downloading {spec.name}{size_text} from {spec.url}")
    digest = hashlib.sha256()
    received = 0
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"{spec.url}: download interrupted after {received} bytes: {exc}") from exc
        if not chunk:
            break
        digest.update(chunk)
        out.write(chunk)
        received += len(chunk)
    if expected_size is not None and received != expected_size:
        raise DownloadError(f"{spec.url}: download truncated: got {received} bytes, expected {expected_size}")
    return digest.hexdigest()


def _extract_verified(
    spec: DatasetSpec,
    archive: Path,
    folder: Path,
    missing: list[str],
    temp_paths: list[Path],
    created_dirs: list[Path],
) -> dict[str, Path]:
    """Extract each missing member to a temporary file beside its destination and check its sha256."""
    staged: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in missing:
                inner = spec.archive_prefix + member
                try:
                    info = zf.getinfo(inner)
                except KeyError:
                    raise DownloadError(f"{spec.url}: archive has no member {inner!r}") from None
                destination = folder / member
                created_dirs += _make_dirs(destination.parent)
                temp = _new_temp(destination.parent, ".part", temp_paths)
                digest = hashlib.sha256()
                with zf.open(info) as src, open(temp, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                actual = digest.hexdigest()
                expected = spec.members[member]
                if actual != expected:
                    raise DownloadError(
                        f"{spec.url}: member {inner!r} has sha256 {actual}, expected {expected}; "
                        "the archive holds a different version of the file"
                    )
                staged[member] = temp
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DownloadError(f"{spec.url}: downloaded file is not a valid zip archive ({exc})") from exc
    return staged


def _new_temp(directory: Path, suffix: str, temp_paths: list[Path]) -> Path:
    # The name starts with a dot so an interrupted run's leftovers never look like dataset files.
    fd, name = tempfile.mkstemp(prefix=".fedrec-", suffix=suffix, dir=directory)
    os.close(fd)
    temp_paths.append(Path(name))
    return Path(name)


def _make_dirs(directory: Path) -> list[Path]:
    """Create `directory` and its missing parents; return the ones created, deepest first."""
    created = []
    current = directory
    while not current.exists():
        created.append(current)
        current = current.parent
    for path in reversed(created):
        path.mkdir(exist_ok=True)
    return created


def _cleanup(temp_paths: list[Path], created_dirs: list[Path]) -> None:
    for path in temp_paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    # Deepest first; a folder that meanwhile holds other files is kept.
    for directory in sorted(set(created_dirs), key=lambda p: len(p.parts), reverse=True):
        try:
            directory.rmdir()
        except OSError:
            pass
