"""The fuse4d zarr log: a whole :class:`Sequence` in one zarr v3 group.

Layout (``S`` frames; every frame layer is a group with ``present [S]`` bool,
so a missing sensor reads back as None, never as an empty array)::

    log.zarr/                 attrs: fuse4d_log {format_version}, name, sensors,
                                     calibration, metadata, flags {index: [...]}
      timestamps [S] f8
      gt_poses [S,4,4] f8                           (optional)
      imu/{t [M], acc [M,3], gyro [M,3]}            (optional)
      frames/<dense>/{data [S,...], present [S]}    image, depth, semantics,
                                                    dynamic_mask, T_world_body
      frames/<ragged>/{data [sumN,...], offsets [S+1] i8, present [S]}
                                                    points, point_time, point_semantics,
                                                    point_dynamic, point_instance
      frames/boxes/{<key> [sumK,...], offsets, present}
      gt_maps/<map>/<array>  (non-array values as attrs)

Every array keeps its dtype; the round trip is bit-exact. The reader is
registered as ``"zarr"`` and accepts the group itself or a folder holding
``log.zarr`` (what :func:`fuse4d.data.export.export_sequence` writes).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm import tqdm
from zarr.codecs import BloscCodec

from fuse4d.data.registry import register_reader
from fuse4d.data.types import Calibration, Frame, ImuSamples, Sequence
from fuse4d.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = "fuse4d_log"
LOG_NAME = "log.zarr"
DENSE = ("image", "depth", "semantics", "dynamic_mask", "T_world_body")
RAGGED = ("points", "point_time", "point_semantics", "point_dynamic", "point_instance")
_RAGGED_CHUNK_BYTES = 4 << 20


def compressors() -> tuple[BloscCodec, ...]:
    """The codec chain used for every fuse4d array (Blosc zstd, byte shuffle)."""
    return (BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (numpy → lists/scalars, sets → sorted lists, Path → str)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted(jsonable(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def swap_into_place(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``; an existing ``path`` is removed only afterwards."""
    if not path.exists():
        os.replace(tmp, path)
        return
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.replace(path, old)
    os.replace(tmp, path)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def write_tree(group: zarr.Group, tree: dict[str, Any]) -> None:
    """Write a nested dict: dicts → subgroups, arrays → arrays, anything else → attrs."""
    attrs = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            write_tree(group.require_group(str(key)), value)
        elif isinstance(value, np.ndarray):
            group.create_array(str(key), data=value, compressors=compressors())
        else:
            attrs[str(key)] = jsonable(value)
    if attrs:
        group.attrs.update(attrs)


def read_tree(group: zarr.Group) -> dict[str, Any]:
    """Inverse of :func:`write_tree`."""
    out: dict[str, Any] = dict(group.attrs)
    for key, arr in group.arrays():
        out[key] = arr[...]
    for key, sub in group.groups():
        out[key] = read_tree(sub)
    return out


def _layer_values(frame: Frame, name: str) -> dict[str, np.ndarray] | None:
    if name == "boxes":
        return None if frame.boxes is None else {k: np.asarray(v) for k, v in frame.boxes.items()}
    v = getattr(frame, name)
    return None if v is None else {"data": np.asarray(v)}


class _LogWriter:
    """Streams frames into ``frames/`` one window of ``chunk`` frames at a time."""

    def __init__(self, root: zarr.Group, n: int, chunk: int, path: Path):
        self.frames, self.n, self.chunk, self.path = root.require_group("frames"), n, chunk, path
        self.present: dict[str, np.ndarray] = {}
        self.offsets: dict[str, np.ndarray] = {}
        self.arrays: dict[str, dict[str, zarr.Array]] = {}
        self.pending: dict[tuple[str, str], list[np.ndarray]] = {}

    def _check(self, i: int, name: str, key: str, a: np.ndarray, target: zarr.Array, rows: bool) -> None:
        if rows and a.ndim == 0:
            raise DataError(self.path, f"frame {i}: {name}.{key} is a scalar, expected one row per item")
        if (a.shape[1:] if rows else a.shape) != target.shape[1:] or a.dtype != target.dtype:
            raise DataError(self.path, f"frame {i}: {name}.{key} is {a.dtype} {list(a.shape)}, earlier frames "
                                       f"had {target.dtype} {['N' if rows else 'S', *target.shape[1:]]}")

    def _create(self, name: str, vals: list[dict[str, np.ndarray] | None], ragged: bool) -> None:
        first = next(v for v in vals if v is not None)
        g = self.frames.require_group(name)
        self.arrays[name] = {}
        self.present[name] = np.zeros(self.n, bool)
        for key, a in first.items():
            if ragged:
                row = max(1, a.dtype.itemsize * int(np.prod(a.shape[1:])))
                shape, chunks = (0, *a.shape[1:]), (max(1024, _RAGGED_CHUNK_BYTES // row), *a.shape[1:])
            else:
                shape, chunks = (self.n, *a.shape), (self.chunk, *a.shape)
            self.arrays[name][key] = g.create_array(key, shape=shape, dtype=a.dtype, chunks=chunks,
                                                    compressors=compressors())
        if ragged:
            self.offsets[name] = np.zeros(self.n + 1, np.int64)

    def dense(self, name: str, w0: int, frames: list[Frame]) -> None:
        vals = [_layer_values(f, name) for f in frames]
        if name not in self.arrays:
            if all(v is None for v in vals):
                return
            self._create(name, vals, ragged=False)
        target = self.arrays[name]["data"]
        block = np.zeros((len(frames), *target.shape[1:]), target.dtype)
        for j, v in enumerate(vals):
            if v is not None:
                self._check(w0 + j, name, "data", v["data"], target, rows=False)
                block[j] = v["data"]
                self.present[name][w0 + j] = True
        target[w0:w0 + len(frames)] = block

    def ragged(self, name: str, w0: int, frames: list[Frame]) -> None:
        vals = [_layer_values(f, name) for f in frames]
        if name not in self.arrays:
            if all(v is None for v in vals):
                return
            self._create(name, vals, ragged=True)
        arrays, offsets = self.arrays[name], self.offsets[name]
        for j, v in enumerate(vals):
            i, rows = w0 + j, 0
            if v is not None:
                if set(v) != set(arrays):
                    raise DataError(self.path, f"frame {i}: {name} has keys {sorted(v)}, earlier frames {sorted(arrays)}")
                for key, a in v.items():
                    self._check(i, name, key, a, arrays[key], rows=True)
                lengths = {len(a) for a in v.values()}
                if len(lengths) > 1:
                    raise DataError(self.path, f"frame {i}: {name} arrays differ in length {sorted(lengths)}")
                rows = lengths.pop() if lengths else 0
            offsets[i + 1] = offsets[i] + rows
            self.present[name][i] = v is not None
        for key in arrays:
            self.pending.setdefault((name, key), []).extend(v[key] for v in vals if v is not None)
            self._flush(name, key, final=False)

    def _flush(self, name: str, key: str, final: bool) -> None:
        """Append buffered rows in whole chunks (no read-modify-write of a partial chunk)."""
        parts, target = self.pending[(name, key)], self.arrays[name][key]
        total = sum(len(p) for p in parts)
        rows = total if final else total - total % target.chunks[0]
        if rows == 0:
            return
        block = np.concatenate(parts, axis=0)
        start = target.shape[0]
        target.resize((start + rows, *target.shape[1:]))
        target[start:start + rows] = block[:rows]
        self.pending[(name, key)] = [block[rows:]] if rows < total else []

    def finish(self) -> None:
        for name, key in self.pending:
            self._flush(name, key, final=True)
        for name, present in self.present.items():
            g = self.frames[name]
            g.create_array("present", data=present, compressors=compressors())
            if name in self.offsets:
                g.create_array("offsets", data=self.offsets[name], compressors=compressors())
            g.attrs["kind"] = "ragged" if name in self.offsets else "dense"


def _write_group(seq: Sequence, path: Path, chunk: int, progress: bool) -> None:
    n = len(seq)
    root = zarr.open_group(zarr.storage.LocalStore(path), mode="w-")
    root.create_array("timestamps", data=np.asarray(seq.timestamps, np.float64), compressors=compressors())
    if seq.gt_poses is not None:
        root.create_array("gt_poses", data=seq.gt_poses, chunks=(max(1, min(n, 1024)), 4, 4),
                          compressors=compressors())
    writer = _LogWriter(root, n, chunk, path)
    flags: dict[str, list[str]] = {}
    frame_imu: list[ImuSamples] = []
    bar = tqdm(total=n, desc=f"write {path.name.split('.tmp-')[0]}", unit="frame", disable=not progress)
    for w0 in range(0, n, chunk):
        frames = [seq[i] for i in range(w0, min(n, w0 + chunk))]
        for name in DENSE:
            writer.dense(name, w0, frames)
        for name in (*RAGGED, "boxes"):
            writer.ragged(name, w0, frames)
        for j, f in enumerate(frames):
            if f.flags:
                flags[str(w0 + j)] = sorted(f.flags)
            if seq.imu is None and f.imu is not None and len(f.imu):
                frame_imu.append(f.imu)
        bar.update(len(frames))
    bar.close()
    writer.finish()
    imu = seq.imu
    if imu is None and frame_imu:
        imu = ImuSamples(*(np.concatenate([getattr(s, k) for s in frame_imu]) for k in ("t", "acc", "gyro")))
    if imu is not None:
        write_tree(root.require_group("imu"), {"t": imu.t, "acc": imu.acc, "gyro": imu.gyro})
    if seq.gt_maps:
        write_tree(root.require_group("gt_maps"), seq.gt_maps)
    from fuse4d import __version__
    root.attrs.update({
        MARKER: {"format_version": FORMAT_VERSION, "fuse4d_version": __version__},
        "name": seq.name, "n_frames": n, "chunk_frames": chunk, "sensors": sorted(seq.sensors),
        "calibration": seq.calibration.to_dict(), "metadata": jsonable(seq.metadata), "flags": flags,
    })


def write_sequence(seq: Sequence, path: str | Path, progress: bool = False, chunk_frames: int = 16,
                   overwrite: bool = False) -> Path:
    """Write ``seq`` (every frame layer, IMU, calibration, metadata, ground truth) as a zarr log.

    Frames stream through in windows of ``chunk_frames`` (also the chunk length
    of the per-frame arrays), so memory stays bounded. The group is written to
    ``<path>.tmp-<pid>`` and renamed into place when complete.

    Returns:
        ``path`` as a :class:`Path`.
    Raises:
        DataError: ``path`` exists and ``overwrite`` is False, or frames disagree
            in a layer's shape/dtype (e.g. images of two sizes).
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise DataError(path, "already exists; pass overwrite=True to replace it")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_group(seq, tmp, chunk_frames, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, path)
    log.info("wrote %d frames to %s", len(seq), path)
    return path


def _is_log(p: Path) -> bool:
    try:
        meta = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("node_type") == "group" and MARKER in (meta.get("attributes") or {})


def detect(path: Path) -> bool:
    """True for a fuse4d zarr log group, or a folder holding one as ``log.zarr``."""
    path = Path(path)
    return path.is_dir() and (_is_log(path) or _is_log(path / LOG_NAME))


class _FrameReader:
    """``reader(i) -> Frame``: reads frame ``i`` of an open log on demand."""

    def __init__(self, root: zarr.Group, path: Path, t: np.ndarray):
        self.path, self.t = path, t
        self.block = max(1, int(root.attrs.get("chunk_frames", 16)))
        self.cache: dict[str, tuple[int, dict[str, np.ndarray]]] = {}  # last window read, per layer
        self.flags = {int(k): set(v) for k, v in (root.attrs.get("flags") or {}).items()}
        self.layers: dict[str, tuple[str, np.ndarray, np.ndarray | None, dict[str, zarr.Array]]] = {}
        for name, g in (root["frames"].groups() if "frames" in root else ()):
            if name not in (*DENSE, *RAGGED, "boxes"):
                log.warning("%s: ignoring unknown frame layer %r", path, name)
                continue
            kind = g.attrs.get("kind")
            arrays = {k: a for k, a in g.arrays() if k not in ("present", "offsets")}
            if kind not in ("dense", "ragged") or "present" not in g or (kind == "ragged") != ("offsets" in g) \
                    or (kind == "dense" and "data" not in arrays):
                raise DataError(path, f"frames/{name}: incomplete layer (missing arrays or 'kind' attribute)")
            present = g["present"][...]
            offsets = g["offsets"][...] if kind == "ragged" else None
            if len(present) != len(t) or (offsets is not None and len(offsets) != len(t) + 1):
                raise DataError(path, f"frames/{name}: covers {len(present)} frames, the log has {len(t)}")
            self.layers[name] = (kind, present, offsets, arrays)

    def __call__(self, i: int) -> Frame:
        frame = Frame(index=i, timestamp=float(self.t[i]), flags=set(self.flags.get(i, ())))
        for name, (kind, present, offsets, arrays) in self.layers.items():
            if not present[i]:
                continue
            w0 = i - i % self.block
            w1 = min(w0 + self.block, len(self.t))
            if self.cache.get(name, (-1,))[0] != w0:
                try:  # read the whole window (one chunk of dense layers): sequential reads decode once
                    sel = slice(w0, w1) if kind == "dense" else slice(int(offsets[w0]), int(offsets[w1]))
                    self.cache[name] = (w0, {k: a[sel] for k, a in arrays.items()})
                except Exception as e:  # a truncated or corrupt chunk
                    raise DataError(self.path, f"frames {w0}-{w1 - 1}: cannot read frames/{name}: {e}") from e
            block = self.cache[name][1]
            if kind == "dense":
                vals = {k: b[i - w0].copy() for k, b in block.items()}
            else:
                o0, o1 = int(offsets[i] - offsets[w0]), int(offsets[i + 1] - offsets[w0])
                vals = {k: b[o0:o1].copy() for k, b in block.items()}
            setattr(frame, name, vals if name == "boxes" else vals["data"])
        return frame


def load(path: str | Path, **options: Any) -> Sequence:
    """Open a fuse4d zarr log lazily (frames are read on demand).

    Args:
        path: the ``log.zarr`` group, or a folder holding one.
    Raises:
        DataError: not a fuse4d log, an unsupported format version, missing
            or inconsistent arrays, or unknown ``options``.
    """
    path = Path(path).expanduser()
    if options:
        raise DataError(path, f"the zarr reader takes no options, got {sorted(options)}")
    root_path = path if _is_log(path) else path / LOG_NAME
    if not _is_log(root_path):
        if (path / "zarr.json").is_file():
            raise DataError(path, f"a zarr group but not a fuse4d log (no '{MARKER}' attribute)")
        raise DataError(path, f"not a fuse4d zarr log: no zarr.json here nor {LOG_NAME}/zarr.json")
    root = zarr.open_group(zarr.storage.LocalStore(root_path, read_only=True), mode="r")
    attrs = root.attrs.asdict()
    version = (attrs[MARKER] or {}).get("format_version") if isinstance(attrs[MARKER], dict) else None
    if version != FORMAT_VERSION:
        raise DataError(root_path, f"log format version {version} is not supported "
                                   f"(this fuse4d reads version {FORMAT_VERSION})")

    def need(name: str) -> np.ndarray:
        try:
            return root[name][...]
        except KeyError:
            raise DataError(root_path, f"missing array '{name}'") from None
        except Exception as e:  # corrupt metadata or chunk
            raise DataError(root_path, f"cannot read array '{name}': {e}") from e

    try:
        return _open(root, root_path, attrs, need)
    except DataError:
        raise
    except (ValueError, KeyError, TypeError, RuntimeError) as e:  # a corrupt zarr.json or chunk (zarr, blosc)
        raise DataError(root_path, f"corrupt log metadata: {type(e).__name__}: {e}") from e


def _open(root: zarr.Group, root_path: Path, attrs: dict, need) -> Sequence:
    t = need("timestamps")
    if attrs.get("n_frames", len(t)) != len(t):
        raise DataError(root_path, f"timestamps has {len(t)} entries but the log has {attrs['n_frames']} frames")
    gt_poses = need("gt_poses") if "gt_poses" in root else None
    if gt_poses is not None and gt_poses.shape != (len(t), 4, 4):
        raise DataError(root_path, f"gt_poses has shape {list(gt_poses.shape)}, expected [{len(t)}, 4, 4]")
    imu = ImuSamples(need("imu/t"), need("imu/acc"), need("imu/gyro")) if "imu" in root else None
    gt_maps = read_tree(root["gt_maps"]) if "gt_maps" in root else None
    return Sequence(t, _FrameReader(root, root_path, t), Calibration.from_dict(attrs.get("calibration") or {}),
                    set(attrs.get("sensors") or ()), imu, gt_poses, attrs.get("metadata") or {},
                    attrs.get("name", root_path.stem), root_path, gt_maps)


register_reader("zarr", detect, load, priority=10,
                description="fuse4d zarr log (a log.zarr group, or a folder holding one)")

__all__ = ["write_sequence", "load", "detect", "FORMAT_VERSION", "MARKER", "LOG_NAME", "jsonable",
           "swap_into_place", "write_tree", "read_tree", "compressors"]
