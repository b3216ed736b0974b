"""``fuse4d export RUN --what occupancy|elevation|mesh|points|tracks --out FILE``.

Formats (run's world frame; DESIGN.md "The store"):

* occupancy ``.npz`` (``origin [3]``, ``resolution``, ``ijk`` int32 ``[N, 3]``, ``labels``
  uint8 ``[N]``, ``log_odds`` float32 ``[N]``: occupied voxels only) or ``.ply`` (voxel
  centres coloured by class);
* elevation ``.npz`` (``origin [2]``, ``resolution``, ``height``, ``variance`` float32
  ``[H, W]`` NaN = unobserved, ``traversable`` uint8 0/1/255, ``semantics`` uint8) or
  ``.png`` (height, traversability, classes side by side);
* mesh ``.ply`` / ``.obj``; points ``.ply`` / ``.pcd`` (static map, coloured);
* tracks ``.csv``: ``track_id, t, x, y, z, vx, vy, vz, l, w, h, yaw`` from the store's
  ``dynamics/tracks`` table.

Every file is written under a temporary name in the target folder and renamed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from fuse4d.errors import ConfigError, DataError

#: what → allowed extensions
FORMATS: dict[str, tuple[str, ...]] = {
    "occupancy": (".npz", ".ply"), "elevation": (".npz", ".png"), "mesh": (".ply", ".obj"),
    "points": (".ply", ".pcd"), "tracks": (".csv",),
}
TRACK_COLUMNS = ("track_id", "t", "x", "y", "z", "vx", "vy", "vz", "l", "w", "h", "yaw")


def _atomic(out: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``out`` (same suffix), then rename it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def open_run(run: str | Path):
    """The :class:`~fuse4d.store.RunStore` of a run folder (or of a ``run.zarr`` path).

    Raises:
        DataError: not a run folder / run store.
    """
    from fuse4d.store import RunStore
    run = Path(run)
    if not run.exists():
        raise DataError(run, "run folder not found")
    path = run / "run.zarr" if (run / "run.zarr").exists() else run
    return RunStore.open(path)


def _need(store, name: str, what: str):
    if name not in store:
        raise DataError(store.path, f"has no '{name}' (the run wrote no {what}); nothing to export")
    return store.read(name)


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray | None = None, triangles: np.ndarray | None = None) -> None:
    """Binary little-endian PLY of points ``xyz [N, 3]`` (float32), colours ``rgb [N, 3]`` uint8,
    optional faces ``triangles [T, 3]`` int32."""
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(xyz)}",
              "property float x", "property float y", "property float z"]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    if triangles is not None:
        header += [f"element face {len(triangles)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    v = np.empty(len(xyz), dtype=fields)
    v["x"], v["y"], v["z"] = xyz.T
    if rgb is not None:
        rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
        v["red"], v["green"], v["blue"] = rgb.T
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        f.write(v.tobytes())
        if triangles is not None:
            tri = np.asarray(triangles, np.int32).reshape(-1, 3)
            faces = np.empty(len(tri), dtype=[("n", "u1"), ("i", "<i4", (3,))])
            faces["n"], faces["i"] = 3, tri
            f.write(faces.tobytes())


def write_obj(path: Path, vertices: np.ndarray, colors: np.ndarray, triangles: np.ndarray) -> None:
    """Wavefront OBJ with per-vertex colours (``v x y z r g b``, colours in [0, 1])."""
    v = np.hstack([np.asarray(vertices, np.float64), np.asarray(colors, np.float64) / 255.0])
    with open(path, "w") as f:
        f.write("# fuse4d mesh\n")
        np.savetxt(f, v, fmt="v %.5f %.5f %.5f %.4f %.4f %.4f")
        np.savetxt(f, np.asarray(triangles, np.int64) + 1, fmt="f %d %d %d")


def write_pcd(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary PCD (x y z rgb, rgb packed as a float as PCL does)."""
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, np.uint32).reshape(-1, 3)
    packed = ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).astype(np.uint32).view(np.float32)
    n = len(xyz)
    header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\n"
              f"TYPE F F F F\nCOUNT 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n")
    data = np.hstack([xyz, packed[:, None]]).astype(np.float32)
    with open(path, "wb") as f:
        f.write(header.encode())
        f.write(data.tobytes())


def _occupancy(store, out: Path) -> None:
    from fuse4d.data.classes import colorize
    occ = _need(store, "maps/occupancy", "occupancy map")
    attrs = store.attrs("maps/occupancy")
    keep = occ["log_odds"] > float(attrs.get("threshold", 0.0))
    origin, res = np.asarray(attrs["origin"], np.float64), float(attrs["resolution"])
    ijk = occ["ijk"][keep].astype(np.int32)
    if out.suffix.lower() == ".npz":
        def w(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, origin=origin, resolution=np.float64(res), ijk=ijk,
                                    labels=occ["labels"][keep].astype(np.uint8),
                                    log_odds=occ["log_odds"][keep].astype(np.float32))
        _atomic(out, w)
    else:
        _atomic(out, lambda tmp: write_ply(tmp, origin + (ijk + 0.5) * res, colorize(occ["labels"][keep])))


def _elevation(store, out: Path) -> None:
    el = _need(store, "maps/elevation", "elevation map")
    attrs = store.attrs("maps/elevation")
    if out.suffix.lower() == ".npz":
        def w(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, origin=np.asarray(attrs["origin"], np.float64),
                                    resolution=np.float64(attrs["resolution"]),
                                    height=el["height"].astype(np.float32), variance=el["variance"].astype(np.float32),
                                    traversable=el["traversable"].astype(np.uint8),
                                    semantics=el["semantics"].astype(np.uint8))
        _atomic(out, w)
    else:
        from fuse4d.mapping.report import plot_elevation
        _atomic(out, lambda tmp: plot_elevation({**el, **attrs}, tmp))


def _mesh(store, out: Path) -> None:
    m = _need(store, "maps/mesh", "mesh (no camera, or mapping.mesh off)")
    if out.suffix.lower() == ".ply":
        _atomic(out, lambda tmp: write_ply(tmp, m["vertices"], m["colors"], m["triangles"]))
    else:
        _atomic(out, lambda tmp: write_obj(tmp, m["vertices"], m["colors"], m["triangles"]))


def _points(store, out: Path) -> None:
    p = _need(store, "maps/points", "static point map")
    if out.suffix.lower() == ".ply":
        _atomic(out, lambda tmp: write_ply(tmp, p["xyz"], p["rgb"]))
    else:
        _atomic(out, lambda tmp: write_pcd(tmp, p["xyz"], p["rgb"]))


def tracks_rows(table: dict[str, np.ndarray]) -> np.ndarray:
    """The ``dynamics/tracks`` table as rows ``[K, 12]`` in :data:`TRACK_COLUMNS` order.

    Accepts the columns ``track_id``/``id``, ``t``, ``position``/``center [K, 3]`` or
    ``x, y, z``, ``velocity [K, 3]`` or ``vx, vy, vz``, ``size [K, 3]`` or ``l, w, h``, ``yaw``.

    Raises:
        DataError: a column is missing.
    """
    def col(*names: str, width: int = 1) -> np.ndarray:
        for n in names:
            if n in table:
                a = np.asarray(table[n], np.float64)
                return a.reshape(len(a), -1)[:, :width]
        raise DataError(None, f"dynamics/tracks has no column {' or '.join(names)} (has {sorted(table)})")

    def vec(name3: tuple[str, ...], names: tuple[str, str, str]) -> np.ndarray:
        try:
            return col(*name3, width=3)
        except DataError:
            return np.hstack([col(n) for n in names])

    return np.hstack([col("track_id", "id"), col("t", "timestamp"),
                      vec(("position", "center", "xyz"), ("x", "y", "z")),
                      vec(("velocity",), ("vx", "vy", "vz")),
                      vec(("size", "box_size"), ("l", "w", "h")), col("yaw")])


def _tracks(store, out: Path) -> None:
    table = _need(store, "dynamics/tracks", "tracks (no dynamics stage ran)")
    if not isinstance(table, dict):
        raise DataError(store.path, "dynamics/tracks is not a table of columns")
    try:
        rows = tracks_rows(table)
    except DataError as e:
        raise DataError(store.path, e.problem) from None

    def w(tmp: Path) -> None:
        with open(tmp, "w") as f:
            f.write(",".join(TRACK_COLUMNS) + "\n")
            for r in rows:
                f.write(f"{int(r[0])},{r[1]:.6f}," + ",".join(f"{v:.4f}" for v in r[2:]) + "\n")
    _atomic(out, w)


_WRITERS = {"occupancy": _occupancy, "elevation": _elevation, "mesh": _mesh, "points": _points, "tracks": _tracks}


def export(run: str | Path, what: str, out: str | Path) -> Path:
    """Export one product of a run to ``out`` (format from its extension).

    Raises:
        ConfigError: unknown ``what`` or extension. DataError: bad run / product absent.
    """
    out = Path(out)
    if what not in FORMATS:
        raise ConfigError(f"unknown --what {what!r}; choose from {', '.join(FORMATS)}")
    if out.suffix.lower() not in FORMATS[what]:
        raise ConfigError(f"--out {out}: {what} exports to {' or '.join(FORMATS[what])}, not {out.suffix or 'no extension'!r}")
    store = open_run(run)
    _WRITERS[what](store, out)
    return out
