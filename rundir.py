"""The run folder's life: refuse what is not fuse4d's, resume what was cut, replace a finished run only whole.

:func:`open_run_folder` decides, before anything is written, where a run goes:

- a new or empty folder: the run is written there;
- a folder holding an unfinished run (``run.zarr`` status ``running``) of the
  same input and config: the run resumes there, from the store's last
  committed window;
- a finished run, or an unfinished one of another input/config: refused unless
  ``overwrite``; with it, the new run is built in a hidden sibling folder and
  swapped in only when complete (:meth:`RunFolder.commit`), so a failed
  ``--overwrite`` leaves the previous run whole;
- a folder holding files fuse4d did not write, a path that is a file, or a
  folder that cannot be written: refused with a one-line DataError.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuse4d.errors import DataError

log = logging.getLogger(__name__)

STORE_NAME = "run.zarr"
_NEW, _OLD = ".fuse4d-new-", ".fuse4d-old-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover_siblings(final: Path) -> None:
    """Undo what a killed ``--overwrite`` left beside ``final``: put back an old run, drop a half-built one."""
    if not final.parent.is_dir():
        return
    for p in final.parent.glob(f".{final.name}{_OLD}*"):
        if not final.exists():
            os.replace(p, final)
            log.warning("%s: restored the previous run after an interrupted --overwrite", final)
        else:
            shutil.rmtree(p, ignore_errors=True)
    for p in final.parent.glob(f".{final.name}{_NEW}*"):
        pid = p.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid))):
            shutil.rmtree(p, ignore_errors=True)


@dataclass
class RunFolder:
    """Where a run is written (``work``) and where it ends up (``final``).

    Attributes:
        final: the folder the user named.
        work: ``final``, or a hidden sibling while an ``--overwrite`` run is built.
        resume: True when ``work`` holds an unfinished run of the same input and config.
    """

    final: Path
    work: Path
    resume: bool = False

    @property
    def store_path(self) -> Path:
        """The run store inside ``work``."""
        return self.work / STORE_NAME

    def commit(self) -> None:
        """Swap a run built beside ``final`` into place (the previous run is removed only afterwards)."""
        if self.work == self.final:
            return
        old = self.final.with_name(f".{self.final.name}{_OLD}{os.getpid()}")
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.work, self.final)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Drop a half-built ``--overwrite`` run; an in-place run stays as it is (resumable)."""
        if self.work != self.final:
            shutil.rmtree(self.work, ignore_errors=True)


def _writable_folder(path: Path) -> None:
    """Create ``path`` (and parents); DataError when it is a file or cannot be written."""
    if path.exists() and not path.is_dir():
        raise DataError(path, "is a file, not a folder; give the run a folder (new or empty)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DataError(path, "a file is in the way of this folder") from None
    except PermissionError:
        raise DataError(path, "cannot create the run folder: permission denied (read-only location?)") from None
    except OSError as e:
        raise DataError(path, f"cannot create the run folder: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataError(path, "the run folder is read-only: permission denied")


def open_run_folder(out: str | Path, source: str, config: dict[str, Any], overwrite: bool = False) -> RunFolder:
    """Decide where a run of ``source`` with the resolved ``config`` is written (see the module doc).

    Raises:
        DataError: ``out`` is a file, not writable, holds foreign files, or holds a
            run that may not be replaced (finished, or another input/config) without ``overwrite``.
    """
    from fuse4d.data.zarr_log import jsonable
    from fuse4d.store import RunStore

    final = Path(out).expanduser()
    _recover_siblings(final)
    _writable_folder(final)
    for p in final.glob(f"{STORE_NAME}.tmp-*"):  # a store whose creation was cut short
        shutil.rmtree(p, ignore_errors=True)
    entries = sorted(p.name for p in final.iterdir())
    if not entries:
        return RunFolder(final, final)
    if STORE_NAME not in entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise DataError(final, f"holds files fuse4d did not write ({shown}); choose a new or empty folder")
    store = RunStore.open(final / STORE_NAME)
    same = store.meta.get("source") == source and store.meta.get("config") == jsonable(config)
    finished = store.meta.get("status") == "done"
    if not overwrite:
        if finished:
            raise DataError(final, "holds a finished run; pass --overwrite (overwrite=True) to replace it "
                                   "(the old run stays until the new one is complete)")
        if not same:
            raise DataError(final, "holds an unfinished run of a different input or config; pass --overwrite "
                                   "(overwrite=True) to replace it")
        log.info("%s: resuming at frame %d of %d", final, store.frames_done, store.n_frames)
        return RunFolder(final, final, resume=True)
    work = final.with_name(f".{final.name}{_NEW}{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    _writable_folder(work)
    return RunFolder(final, work)
