"""Writing files and folders atomically: a reader, or a run killed midway, sees the old content or the new, never a
half-written file. Everything written is readable by others where the umask allows, as a plainly created file is."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def share_as_umask(path: Path) -> None:
    """Give `path` (and all below it) the permissions a plainly created file or directory would have.

    mkdtemp makes directories 0700 and safetensors writes files 0600, so without this a checkpoint could be read by
    its owner alone on a shared machine."""
    mask = _umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temp path next to `path` for a writer to create; on success it replaces `path`, on error it is
    removed. The temp name keeps `path`'s suffix, so writers that choose a format by it (PyAV) still do."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
    try:
        yield tmp
        share_as_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def replace_dir(src: Path, dst: Path) -> None:
    """Puts directory `src` at `dst`; an existing `dst` is moved aside first, so a crash leaves one complete copy."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old, dst)  # put the old directory back rather than leave only the hidden copy
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextmanager
def atomic_dir(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temp directory beside `directory` to fill; on success it replaces `directory` (`replace_dir`),
    and it is removed whatever happens, so a crash never leaves a half-written directory where a complete one is
    expected."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        yield tmp
        share_as_umask(tmp)
        replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC or EDQUOT, raised as an OSError or (by safetensors, whose errno is only in its message) otherwise."""
    codes = (errno.ENOSPC, errno.EDQUOT)
    if isinstance(e, OSError):
        return e.errno in codes
    return any(f"(os error {code})" in str(e) for code in codes)


def make_out_dir(folder: Path, flag: str = "--out") -> None:
    """Create the folder results go to, or say why it cannot be: called before sampling, so that a long run is not
    lost at its end for want of somewhere to write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise ValueError(f"{flag}: cannot make the folder {folder}: {e.filename} is a file; pass another path") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: the folder {folder} is not writable; pass a path you can write to")


def continue_csv(path: Path, header: str, step: int) -> None:
    """A run's CSV log (its first column the step) continued by a run resuming at `step`: rows past it, of steps
    the resumed run replays, are dropped, so every step appears once (a new log gets its header)."""
    rows = path.read_text().splitlines()[1:] if path.exists() else []
    kept = [r for r in rows if int(r.split(",")[0]) <= step]
    atomic_write_text(path, header + "".join(r + "\n" for r in kept))
