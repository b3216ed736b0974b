"""The per-run output store: one zarr v3 group per pipeline run (DESIGN.md "The store").

Layout::

    run.zarr/                 attrs: fuse4d_run {version}
      meta/                   attrs: fuse4d_version, config, source, n_frames,
                                     frames_done, status ("running" | "done")
      poses [S,4,4] f8        T_world_body, NaN until written
      timestamps [S] f8       NaN until written
      gates [S,3] f4          modality weights (camera, lidar, imu), NaN until written
      frames/{depth,semantics,dynamic}   [S,H,W] per-frame arrays, created on first write
      lidar/{labels,dynamic}/{values [sumN], offsets [S+1]}   ragged per-point arrays
      maps/occupancy, maps/elevation/{height,variance,semantics}, dynamics/tracks

Per-frame arrays are chunked per window (chunk = length of the first write).
Resume protocol: write a window's arrays, then :meth:`RunStore.mark_done`;
``frames_done`` only advances after the data is on disk, so a crash mid-window
resumes at that window. Maps are written under a temporary name and swapped
in, so a finished map is never half-overwritten.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from fuse4d.data.zarr_log import compressors, jsonable, swap_into_place
from fuse4d.errors import DataError

log = logging.getLogger(__name__)

RUN_MARKER = "fuse4d_run"
STORE_VERSION = 1
_RAGGED_CHUNK_ROWS = 1 << 18


def _node_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "zarr.json").read_text()).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None


def _recover(folder: Path) -> None:
    """Finish or undo map swaps interrupted by a crash, in every group under ``folder``."""
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = child.name
        if ".tmp-" in name:
            shutil.rmtree(child, ignore_errors=True)
        elif ".old-" in name:
            final = child.with_name(name.split(".old-")[0])
            if final.exists():
                shutil.rmtree(child, ignore_errors=True)
            else:
                os.replace(child, final)
                log.warning("%s: restored %s after an interrupted write", folder, final.name)
                if _node_type(final) == "group":
                    _recover(final)
        elif _node_type(child) == "group":
            _recover(child)


class RunStore:
    """One run's outputs in a zarr group; use :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, root: zarr.Group):
        self.path, self.root = path, root
        self._meta = root["meta"].attrs.asdict()

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any], source: str, n_frames: int,
               overwrite: bool = False, window: int | None = None) -> "RunStore":
        """Start a run of ``n_frames`` frames at ``path``.

        ``window`` sets the chunk length of ``poses``/``timestamps``/``gates``
        (default ``min(n_frames, 64)``). The empty store is built under a
        temporary name and swapped in, so an existing run is replaced whole.

        Raises:
            DataError: ``path`` exists and ``overwrite`` is False.
        """
        path = Path(path).expanduser()
        if path.exists() and not overwrite:
            raise DataError(path, "already exists; pass overwrite=True to replace it, or RunStore.open() to resume")
        from fuse4d import __version__

        n = int(n_frames)
        chunk = max(1, int(window or min(n, 64)))
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            root = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w-",
                                   attributes={RUN_MARKER: {"version": STORE_VERSION}})
            root.create_group("meta", attributes={
                "fuse4d_version": __version__, "config": jsonable(config), "source": str(source),
                "n_frames": n, "frames_done": 0, "status": "running"})
            for name, shape, dtype in (("poses", (n, 4, 4), "f8"), ("timestamps", (n,), "f8"), ("gates", (n, 3), "f4")):
                root.create_array(name, shape=shape, dtype=dtype, chunks=(chunk, *shape[1:]), fill_value=np.nan,
                                  compressors=compressors())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        swap_into_place(tmp, path)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> "RunStore":
        """Open an existing run (e.g. to resume at :attr:`frames_done`).

        Raises:
            DataError: no such folder, not a fuse4d run store, or an unsupported version.
        """
        path = Path(path).expanduser()
        try:
            attrs = json.loads((path / "zarr.json").read_text()).get("attributes") or {}
        except (OSError, ValueError):
            raise DataError(path, "not a fuse4d run store (no readable zarr.json)") from None
        if RUN_MARKER not in attrs:
            raise DataError(path, f"a zarr group but not a fuse4d run store (no '{RUN_MARKER}' attribute)")
        version = (attrs[RUN_MARKER] or {}).get("version")
        if version != STORE_VERSION:
            raise DataError(path, f"run store version {version} is not supported (this fuse4d reads {STORE_VERSION})")
        _recover(path)
        root = zarr.open_group(zarr.storage.LocalStore(path), mode="r+")
        if "meta" not in root:
            raise DataError(path, "run store has no 'meta' group")
        return cls(path, root)

    # -- state -------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        """The ``meta`` attributes (version, config, source, n_frames, frames_done, status)."""
        return dict(self._meta)

    @property
    def n_frames(self) -> int:
        """Frames in the run."""
        return int(self._meta["n_frames"])

    @property
    def frames_done(self) -> int:
        """Frames ``[0, frames_done)`` are completely written; resume from here."""
        return int(self._meta["frames_done"])

    def mark_done(self, upto: int) -> None:
        """Record that frames ``[0, upto)`` are written (the per-window pass; resume starts there).

        Call only after the window's arrays are written. The run's status stays
        ``running`` until :meth:`finish`. Raises DataError when ``upto`` is
        outside ``[0, n_frames]``.
        """
        if not 0 <= upto <= self.n_frames:
            raise DataError(self.path, f"mark_done({upto}) outside [0, {self.n_frames}]")
        update = {"frames_done": int(upto)}
        self.root["meta"].attrs.update(update)  # one zarr.json rewrite, atomic (temp file + replace)
        self._meta.update(update)

    def finish(self) -> None:
        """Mark the whole run complete (status ``done``): every pass and output is written."""
        update = {"frames_done": self.n_frames, "status": "done"}
        self.root["meta"].attrs.update(update)
        self._meta.update(update)

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` was called."""
        return self._meta.get("status") == "done"

    def update_meta(self, **values: Any) -> None:
        """Add JSON-safe entries to the ``meta`` attributes (e.g. metrics, timing)."""
        values = jsonable(values)
        self.root["meta"].attrs.update(values)
        self._meta.update(values)

    # -- writes --------------------------------------------------------------
    def _check_span(self, name: str, start: int, k: int) -> None:
        if start < 0 or start + k > self.n_frames:
            raise DataError(self.path, f"{name}: frames [{start}, {start + k}) outside the run's {self.n_frames} frames")

    def write_frames(self, name: str, start: int, array: np.ndarray) -> None:
        """Write per-frame values ``array [k, ...]`` to frames ``[start, start + k)`` of ``name``.

        The array (``[S, ...]``) is created on first write with chunk length
        ``k`` (the window), fill NaN for floats and 0 otherwise. Raises
        DataError for frames outside the run or a shape/dtype that does not fit.
        """
        array = np.asarray(array)
        self._check_span(name, start, len(array))
        if name not in self.root:
            fill = np.nan if np.issubdtype(array.dtype, np.floating) else 0
            self.root.create_array(name, shape=(self.n_frames, *array.shape[1:]), dtype=array.dtype,
                                   chunks=(max(1, len(array)), *array.shape[1:]), fill_value=fill,
                                   compressors=compressors())
        target = self.root[name]
        if not isinstance(target, zarr.Array) or target.shape[1:] != array.shape[1:] \
                or not np.can_cast(array.dtype, target.dtype, "same_kind"):
            raise DataError(self.path, f"{name}: cannot write {array.dtype} {list(array.shape)} into "
                                       f"{getattr(target, 'dtype', 'a group')} {list(getattr(target, 'shape', []))}")
        target[start:start + len(array)] = array.astype(target.dtype, copy=False)

    def write_ragged(self, name: str, start: int, arrays: list[np.ndarray]) -> None:
        """Write one variable-length array ``[N_i, ...]`` per frame to frames ``[start, start + k)``.

        Stored as ``name/values [sumN, ...]`` + ``name/offsets [S+1]`` (-1 =
        not written). Frames must be written in order: frame ``start - 1``
        must be written; anything after the window is discarded (resume).
        Raises DataError otherwise or on a shape/dtype mismatch.
        """
        arrays = [np.asarray(a) for a in arrays]
        self._check_span(name, start, len(arrays))
        if not arrays:
            return
        first = arrays[0]
        if name not in self.root:
            g = self.root.create_group(name)
            g.create_array("values", shape=(0, *first.shape[1:]), dtype=first.dtype,
                           chunks=(_RAGGED_CHUNK_ROWS, *first.shape[1:]), compressors=compressors())
            offsets = g.create_array("offsets", shape=(self.n_frames + 1,), dtype="i8", fill_value=-1,
                                     chunks=(max(1, self.n_frames + 1),), compressors=compressors())
            offsets[0] = 0
        values, offsets = self.root[f"{name}/values"], self.root[f"{name}/offsets"]
        bad = [i for i, a in enumerate(arrays) if a.ndim == 0 or a.shape[1:] != values.shape[1:]]
        if bad:
            raise DataError(self.path, f"{name}: frame {start + bad[0]} has shape {list(arrays[bad[0]].shape)}, "
                                       f"expected [N, {', '.join(map(str, values.shape[1:]))}]".replace(", ]", "]"))
        base = int(offsets[start])
        if base < 0:
            raise DataError(self.path, f"{name}: frame {start - 1} not written yet (write frames in order)")
        ends = base + np.cumsum([len(a) for a in arrays])
        values.resize((int(ends[-1]), *values.shape[1:]))
        if ends[-1] > base:
            values[base:int(ends[-1])] = np.concatenate(arrays).astype(values.dtype, copy=False)
        new = offsets[...]
        new[start + 1:start + 1 + len(arrays)] = ends
        new[start + 1 + len(arrays):] = -1
        offsets[...] = new  # after the values: a crash in between leaves the old offsets

    def write_points(self, name: str, start: int, arrays: list[np.ndarray]) -> None:
        """Write one per-LiDAR-point value array ``[N_i]`` per frame to ``lidar/<name>``.

        DESIGN.md's layout: every per-point array (``lidar/semantics``,
        ``lidar/dynamic``, ``lidar/ground``) is flat ``[P]`` in the input frames'
        point order and shares ``lidar/offsets [S+1]`` (frame i's points are
        ``[offsets[i], offsets[i+1])``, -1 = not known yet). The first write of a
        frame fixes its point count (frames must be first written in order);
        later writes of other arrays for the same frames must match it. Unwritten
        values read as the fill (0, or NaN for floats). Raises DataError on a
        count mismatch or an out-of-order first write.
        """
        arrays = [np.asarray(a).reshape(-1) for a in arrays]
        self._check_span(f"lidar/{name}", start, len(arrays))
        if not arrays:
            return
        g = self.root.require_group("lidar")
        if "offsets" not in g:
            off = g.create_array("offsets", shape=(self.n_frames + 1,), dtype="i8", fill_value=-1,
                                 chunks=(max(1, self.n_frames + 1),), compressors=compressors())
            off[0] = 0
        offsets = g["offsets"][...]
        counts = np.array([len(a) for a in arrays], dtype=np.int64)
        known = offsets[start + 1:start + 1 + len(arrays)] >= 0
        if known.any():
            have = np.diff(offsets[start:start + 1 + len(arrays)])[known]
            if not np.array_equal(have, counts[known]):
                k = int(np.flatnonzero(known)[np.flatnonzero(have != counts[known])[0]])
                raise DataError(self.path, f"lidar/{name}: frame {start + k} has {counts[k]} points, "
                                           f"the run recorded {have[np.flatnonzero(have != counts[known])[0]]}")
        if not known.all():
            if offsets[start] < 0:
                raise DataError(self.path, f"lidar/{name}: frame {start - 1} has no point count yet (write frames in order)")
            offsets[start + 1:start + 1 + len(arrays)] = offsets[start] + np.cumsum(counts)
        end = int(offsets[start + len(arrays)])
        first = arrays[0]
        if name not in g:
            fill = np.nan if np.issubdtype(first.dtype, np.floating) else 0
            g.create_array(name, shape=(0,), dtype=first.dtype, chunks=(_RAGGED_CHUNK_ROWS,), fill_value=fill,
                           compressors=compressors())
        values = g[name]
        if values.shape[0] < end:
            values.resize((end,))
        base = int(offsets[start])
        if end > base:
            values[base:end] = np.concatenate(arrays).astype(values.dtype, copy=False)
        if not known.all():
            g["offsets"][...] = offsets  # after the values: a crash in between leaves the old offsets

    def read_points(self, name: str) -> "PointsView":
        """``lidar/<name>`` split per frame ``[N_i]`` over the frames with a known point count,
        read lazily (a frame at a time, so long runs are read in bounded memory).

        Raises DataError when the run has no such array.
        """
        if "lidar" not in self.root or name not in self.root["lidar"]:
            raise DataError(self.path, f"no 'lidar/{name}' in this run")
        return PointsView(self.root[f"lidar/{name}"], self.root["lidar/offsets"][...])

    def write_map(self, name: str, value: np.ndarray | dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> None:
        """Write a whole map (``maps/occupancy``) or a group of arrays (``maps/elevation``) atomically.

        The new node is written under a temporary name and swapped in after it
        is complete; the previous one is removed only then.
        """
        parent_name, _, leaf = name.rpartition("/")
        parent = self.root.require_group(parent_name) if parent_name else self.root
        tmp_name = f"{leaf}.tmp-{os.getpid()}"
        tmp_dir = self.path / parent_name / tmp_name
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        try:
            if isinstance(value, dict):
                node = parent.create_group(tmp_name)
                for key, arr in value.items():
                    node.create_array(key, data=np.asarray(arr), compressors=compressors())
            else:
                node = parent.create_array(tmp_name, data=np.asarray(value), compressors=compressors())
            if attrs:
                node.attrs.update(jsonable(attrs))
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        swap_into_place(tmp_dir, self.path / name)

    # -- reads ---------------------------------------------------------------
    def read(self, name: str) -> np.ndarray | list[np.ndarray] | dict[str, np.ndarray]:
        """Read ``name``: an array; a ragged array as a list ``[N_i, ...]`` over the frames
        written so far; a map group as a dict of arrays. Raises DataError when absent."""
        try:
            node = self.root[name]
        except KeyError:
            raise DataError(self.path, f"no '{name}' in this run") from None
        if isinstance(node, zarr.Array):
            return node[...]
        keys = {k for k, _ in node.arrays()}
        if {"values", "offsets"} <= keys:
            offsets = node["offsets"][...]
            n = int(np.argmax(offsets < 0)) if (offsets < 0).any() else len(offsets)
            values = node["values"][:int(offsets[n - 1])]
            return [values[offsets[i]:offsets[i + 1]] for i in range(n - 1)]
        return {k: a[...] for k, a in node.arrays()}

    def attrs(self, name: str) -> dict[str, Any]:
        """Attributes of the node ``name`` (e.g. a map's origin and resolution)."""
        try:
            return self.root[name].attrs.asdict()
        except KeyError:
            raise DataError(self.path, f"no '{name}' in this run") from None

    def __contains__(self, name: str) -> bool:
        return name in self.root

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, frames_done={self.frames_done}/{self.n_frames}, status={self._meta.get('status')!r})"


class PointsView(Sequence):
    """A per-point array ``[P]`` seen per frame: ``view[i]`` is frame ``i``'s ``[N_i]`` values.

    Reads one chunk-aligned block at a time (memory stays bounded however long the run);
    a frame whose values were never written reads as the array's fill value (0, or NaN).
    """

    def __init__(self, values: zarr.Array, offsets: np.ndarray):
        n = int(np.argmax(offsets < 0)) if (offsets < 0).any() else len(offsets)
        self._values, self._offsets, self._len = values, np.asarray(offsets[:n], np.int64), max(n - 1, 0)
        self._block: tuple[int, int, np.ndarray | None] = (0, 0, None)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._len))]
        i = operator.index(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"frame {i} out of range [0, {self._len})")
        arr = self._values
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        have = min(b, arr.shape[0])  # values past the array's end were never written
        v = np.zeros(0, arr.dtype)
        if have > a:
            lo, hi, block = self._block
            if block is None or a < lo or have > hi:
                c = int(arr.chunks[0])
                lo, hi = a // c * c, min(-(-have // c) * c, arr.shape[0])
                block = arr[lo:hi]
                self._block = (lo, hi, block)
            v = block[a - lo:have - lo]
        if len(v) < b - a:  # never written for this frame: the fill value
            v = np.concatenate([v, np.full(b - a - len(v), arr.fill_value, dtype=arr.dtype)])
        return v
