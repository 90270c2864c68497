"""Atomic file output: write a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fedrec.shared.errors import FedrecError


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Either the whole new file appears at `path`, or nothing changes. `mode` defaults to what
    open() would give (0666 less the umask); mkstemp alone would leave every output private (0600)."""
    write_chunks(path, [data], mode)


def write_chunks(path: Path, chunks: Iterable[bytes], mode: int | None = None) -> None:
    """As write_bytes, from pieces made one at a time (a large file is never whole in memory)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FedrecError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            for chunk in chunks:
                stream.write(chunk)
        os.chmod(temporary, _default_mode() if mode is None else mode)
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FedrecError(f"cannot write {path}: {exc.strerror}") from None
        raise


def write_files(files: dict[Path, bytes]) -> None:
    """Several outputs together: every file is written to a temporary beside its target first, and only
    when all of them are written are they renamed into place, so a failure leaves none of them changed."""
    temporaries: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                temporaries.append((temporary, path))
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                os.chmod(temporary, _default_mode())
            except OSError as exc:
                raise FedrecError(f"cannot write {path}: {exc.strerror}; no output was written") from None
        for temporary, path in temporaries:
            os.replace(temporary, path)
    finally:
        for temporary, _ in temporaries:
            Path(temporary).unlink(missing_ok=True)


def npz_bytes(**arrays: Any) -> bytes:
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    write_bytes(path, text.encode("utf-8"), mode)


def write_npz(path: Path, mode: int | None = None, **arrays: Any) -> None:
    """numpy arrays in one .npz file, written atomically."""
    write_bytes(path, npz_bytes(**arrays), mode)


def write_json(path: Path, payload: Any) -> None:
    write_bytes(path, json_bytes(payload))
