"""Where a build writes, so that nothing a user owns is lost: which existing paths a build
may replace, an advisory lock that keeps a second build out for the whole build, the
temporary folder the artifact is written into, removal of temporaries whose process is
gone, and the swap at the end.

Beside an output directory NAME, in its parent:
  .NAME.inferc-lock       the lock file (fcntl.flock); holds the id of the locking process
  .NAME.inferc-tmp-PID    the artifact being written by process PID
  .NAME.inferc-old-PID    the artifact being replaced, for the instant of the swap

    with OutputDir(path, force) as out:   # checks, lock, stale temporaries, a new temporary
        ...write into out.temporary...
        out.commit()                      # the temporary becomes `path`
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from inferc.core.errors import OutputBusyError, OutputDirError
from inferc.compiler.manifest import MANIFEST_FILE, is_inferc_manifest

log = logging.getLogger("inferc.outdir")

_LOCK_SUFFIX = ".inferc-lock"
_TMP = "inferc-tmp"
_OLD = "inferc-old"
_SHOWN = 3  # names quoted in a refusal
_PID_READ_TRIES = 20  # the holder writes its pid just after locking; wait up to ~0.2 s for it


def lock_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}{_LOCK_SUFFIX}"


def temporary_path(out_dir: Path, pid: int | None = None) -> Path:
    return out_dir.parent / f".{out_dir.name}.{_TMP}-{os.getpid() if pid is None else pid}"


def _aside_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.{_OLD}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- what may be replaced ---------------------------------------------------------------


def check_not_protected(out_dir: Path) -> None:
    """Refuse the current directory, any parent of it and the root, whatever --force says."""
    resolved, cwd = out_dir.resolve(), Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        what = "the root directory"
    elif resolved == cwd:
        what = "the current directory"
    elif resolved in cwd.parents:
        what = "a parent of the current directory"
    else:
        return
    raise OutputDirError(f"output '{out_dir}' is {what}; inferc never writes over it, even with --force: "
                         f"give a folder of its own, e.g. --out {out_dir / 'artifact'}")


def _listing(names: list[str]) -> str:
    quoted = ", ".join(f"'{n}'" for n in names[:_SHOWN])
    return quoted + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _entries(root: Path) -> list[str]:
    """Every file, link or other non-folder under root, relative, without following links."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        out += [(rel / n).as_posix() for n in filenames]
        out += [(rel / n).as_posix() for n in dirnames if (Path(dirpath) / n).is_symlink()]
    return sorted(out)


def _manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if is_inferc_manifest(data) else None


def why_not_replaceable(out_dir: Path) -> str | None:
    """Why an existing path may not be replaced by a build, or None when it may be: an
    empty folder, or an inferc artifact holding nothing but the files its manifest lists."""
    if out_dir.is_symlink():
        return (f"output '{out_dir}' is a symbolic link; inferc does not replace links: "
                "give the real path, or remove the link yourself")
    if not out_dir.is_dir():
        return (f"output '{out_dir}' is a file, not an artifact folder; inferc will not replace it: "
                "choose another --out, or move the file away yourself")
    top = sorted(p.name for p in out_dir.iterdir())
    if not top:
        return None
    manifest = _manifest(out_dir)
    if manifest is None:
        return (f"output directory '{out_dir}' is not an inferc artifact (no {MANIFEST_FILE} written by inferc; "
                f"it holds {_listing(top)}); --force replaces only an inferc artifact or an empty folder: "
                "choose another --out")
    listed = {f.get("path") for f in manifest["files"] if isinstance(f, dict)} | {MANIFEST_FILE}
    extra = [e for e in _entries(out_dir) if e not in listed]
    if extra:
        return (f"output directory '{out_dir}' is an inferc artifact but also holds {_listing(extra)}, which inferc "
                "did not write; --force will not delete them: move them out, or choose another --out")
    return None


def check_replaceable(out_dir: Path, force: bool) -> None:
    """Raise OutputDirError unless a build may write `out_dir`: it is absent, or (with
    force) an empty folder or an untouched inferc artifact."""
    if not os.path.lexists(out_dir):
        return
    try:
        refusal = why_not_replaceable(out_dir)
    except OSError as exc:
        raise OutputDirError(f"output '{out_dir}' cannot be examined ({exc.strerror or exc}); choose another --out") from exc
    if refusal:
        raise OutputDirError(refusal)
    if not force:
        raise OutputDirError(f"output directory '{out_dir}' already exists; pass --force to replace it")


# --- the lock -----------------------------------------------------------------------------


def _holder(fd: int) -> str:
    for _ in range(_PID_READ_TRIES):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"process {text}"
        time.sleep(0.01)
    return "a process that has not written its id"


def acquire_lock(out_dir: Path, wait: bool = False) -> int:
    """Take the lock beside out_dir and write this process's id into it; returns its fd.
    Without wait, a lock held elsewhere raises OutputBusyError naming the holder."""
    path = lock_path(out_dir)
    while True:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the parent was removed under us by a build that failed
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputBusyError(f"output directory '{out_dir}' is being built by another inferc build ({holder}); "
                                  "wait for it to end, or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(path, fd):
            break
        os.close(fd)  # the previous holder removed the file between our open and flock: retry
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def release_lock(out_dir: Path, fd: int) -> None:
    """Remove the lock file (while still holding it, so no one locks a file about to go) and unlock."""
    path = lock_path(out_dir)
    if _same_file(path, fd):
        path.unlink()
    os.close(fd)


@contextmanager
def locked(out_dir: Path, wait: bool = False) -> Iterator[None]:
    fd = acquire_lock(out_dir, wait)
    try:
        yield
    finally:
        with _signals_deferred():
            release_lock(out_dir, fd)


# --- temporaries and the swap ---------------------------------------------------------------


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Remove the temporaries beside out_dir whose process is gone; call with the lock held.
    A replaced artifact left aside by a swap cut short goes back to out_dir if that is missing."""
    if not out_dir.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.({_TMP}|{_OLD})-([0-9]+)")
    stale = []
    for entry in out_dir.parent.iterdir():
        m = pattern.fullmatch(entry.name)
        if m and entry.is_dir() and not entry.is_symlink():
            pid = int(m.group(2))
            if pid == os.getpid() or not pid_alive(pid):  # our own id: a dead process's, reused
                stale.append((m.group(1) == _OLD, entry, pid))
    removed = []
    for is_old, entry, pid in sorted(stale, key=lambda s: not s[0]):  # the replaced artifact first
        if is_old and not os.path.lexists(out_dir):
            os.rename(entry, out_dir)
            log.warning("restored %s from %s, left aside by process %d, which is gone", out_dir, entry.name, pid)
            continue
        shutil.rmtree(entry)
        log.info("removed %s, left by process %d, which is gone", entry, pid)
        removed.append(entry)
    return removed


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then go to the handlers the process
    had. Python-level, since a signal may reach the process through any of its threads."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.signal(sig, lambda signum, _frame: caught.append(signum))
        handlers[sig] = signal.SIG_DFL if previous is None else previous
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _swap(new: Path, out_dir: Path) -> None:
    """What is at out_dir goes aside, `new` comes in; if it cannot, the old one goes back."""
    if not os.path.lexists(out_dir):
        os.rename(new, out_dir)
        return
    aside = _aside_path(out_dir)
    os.rename(out_dir, aside)
    try:
        os.rename(new, out_dir)
    except OSError:
        os.rename(aside, out_dir)
        raise


def replace_dir(new: Path, out_dir: Path) -> None:
    """Move the folder `new` to `out_dir`, replacing and then removing what is there.
    Signals wait for the two renames, so out_dir is never left missing by them."""
    with _signals_deferred():
        _swap(new, out_dir)
    aside = _aside_path(out_dir)
    if aside.exists():
        shutil.rmtree(aside)


def _missing_ancestors(path: Path) -> list[Path]:
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing  # deepest first


class OutputDir:
    """The output directory of one build, held from plan time to the end (see the module
    docstring). Leaving the block without commit() removes the temporary and any parent
    folders it had to create; either way the lock is released and its file removed."""

    def __init__(self, path: Path, force: bool) -> None:
        self.path = Path(path)
        self.force = force
        self.temporary = temporary_path(self.path)
        self.removed: list[Path] = []  # stale temporaries removed at the start
        self.committed = False
        self._made = False  # the temporary is ours to remove
        self._fd: int | None = None
        self._created: list[Path] = []

    def __enter__(self) -> OutputDir:
        check_not_protected(self.path)
        self._created = _missing_ancestors(self.path.parent)
        try:
            self._fd = acquire_lock(self.path)
            check_replaceable(self.path, self.force)
            self.removed = remove_stale_temporaries(self.path)
            self.temporary.mkdir()
            self._made = True
        except OSError as exc:
            self._close()
            raise OutputDirError(f"cannot prepare output '{self.path}': {exc.strerror or exc} ({exc.filename}); "
                                 "choose another --out") from exc
        except BaseException:
            self._close()
            raise
        return self

    def commit(self) -> None:
        """The temporary becomes the output directory, replacing what --force allowed."""
        check_replaceable(self.path, self.force)  # something other than a build may have appeared there
        with _signals_deferred():
            _swap(self.temporary, self.path)
            self.committed = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._close()

    def _close(self) -> None:
        with _signals_deferred():
            if self._made:
                for leftover in (self.temporary, _aside_path(self.path)):
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover, ignore_errors=True)
            if self._fd is not None:
                release_lock(self.path, self._fd)
                self._fd = None
            if not self.committed:
                for folder in self._created:
                    try:
                        folder.rmdir()
                    except OSError:  # not empty: someone else is using it now
                        break
