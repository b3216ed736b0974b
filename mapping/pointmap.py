"""The static point map: points kept once per place, so revisits do not grow it.

A point is kept when its fine voxel (``spacing`` m, the exported map's resolution) holds no
kept point yet and its coarse voxel (``cap_voxel`` m) holds fewer than ``cap`` kept points.
Once a place's coarse voxels are full, later laps over it add nothing: the map follows the
area, not the length of the log. Memory: the kept points (16 B each: float32 xyz, uint8
rgb and label) in fixed-size chunks, plus a sorted int64 key per kept point and per
coarse voxel; no step ever copies the whole map except :meth:`PointMap.arrays`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fuse4d.mapping.occupancy import pack

CHUNK = 1 << 18  # points per stored chunk (4 MiB of points)
MERGE_MIN = 1 << 16  # recent keys merged into the main sorted keys once past max(this, 1/8 of them)


def _first_per_key(keys: np.ndarray) -> np.ndarray:
    """Indices ``[U]`` of the first occurrence of each distinct key, in order of arrival."""
    _, first = np.unique(keys, return_index=True)
    first.sort()
    return first


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position ``[N]`` of each key in ``sorted_keys`` or where it would go, found ``[N]`` bool)."""
    pos = np.searchsorted(sorted_keys, keys)
    found = np.zeros(len(keys), bool)
    inside = pos < len(sorted_keys)
    found[inside] = sorted_keys[pos[inside]] == keys[inside]
    return pos, found


class PointMap:
    """Static point map with at most one point per ``spacing`` voxel and ``cap`` per ``cap_voxel`` voxel.

    Args:
        spacing: fine voxel edge (m); at most one point per fine voxel.
        cap_voxel: coarse voxel edge (m) of the cap.
        cap: points per coarse voxel at most (0 = no cap: one point per fine voxel only).
        origin: ``[3]`` m, a corner of both lattices.
    """

    def __init__(self, spacing: float, cap_voxel: float, cap: int, origin: np.ndarray | None = None):
        self.spacing, self.cap_voxel, self.cap = float(spacing), float(cap_voxel), int(cap)
        self.origin = np.zeros(3) if origin is None else np.asarray(origin, np.float64).reshape(3)
        self._fine = np.zeros(0, np.int64)      # sorted keys of the fine voxels holding a point ...
        self._recent = np.zeros(0, np.int64)    # ... and of the latest ones (sorted; merged into _fine now
        #                                         and then, so a frame does not reallocate every key)
        self._coarse = np.zeros(0, np.int64)    # sorted keys of the coarse voxels holding points
        self._count = np.zeros(0, np.int32)     # points kept per coarse voxel (aligned with _coarse)
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # full chunks of CHUNK points
        self._open: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []    # the chunk being filled
        self._n_open = 0

    def __len__(self) -> int:
        return len(self._fine) + len(self._recent)

    def _keys(self, xyz: np.ndarray, edge: float) -> np.ndarray:
        return pack(np.floor((np.asarray(xyz, np.float64) - self.origin) / edge).astype(np.int64))

    def add(self, xyz: np.ndarray, rgb: np.ndarray, labels: np.ndarray) -> int:
        """Offer world points ``xyz [N, 3]`` m with ``rgb [N, 3]`` uint8 and ``labels [N]`` uint8;
        returns how many were kept (first come, first kept)."""
        if len(xyz) == 0:
            return 0
        xyz = np.asarray(xyz, np.float32)  # keys from the values kept, so the stored map obeys the rule exactly
        fine = self._keys(xyz, self.spacing)
        idx = _first_per_key(fine)
        idx = idx[~_member(self._fine, fine[idx])[1]]
        idx = idx[~_member(self._recent, fine[idx])[1]]
        if self.cap > 0 and len(idx):
            coarse = self._keys(xyz[idx], self.cap_voxel)
            cpos, cfound = _member(self._coarse, coarse)
            have = np.zeros(len(idx), np.int64)
            have[cfound] = self._count[cpos[cfound]]
            order = np.argsort(coarse, kind="stable")          # rank of each point within its coarse voxel
            sc = coarse[order]
            start = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
            rank = np.empty(len(idx), np.int64)
            rank[order] = np.arange(len(idx)) - np.repeat(start, np.diff(np.r_[start, len(idx)]))
            ok = have + rank < self.cap
            idx, coarse, cpos, cfound = idx[ok], coarse[ok], cpos[ok], cfound[ok]
            if len(idx):
                np.add.at(self._count, cpos[cfound], 1)
                new, n_new = np.unique(coarse[~cfound], return_counts=True)
                at = np.searchsorted(self._coarse, new)
                self._coarse = np.insert(self._coarse, at, new)
                self._count = np.insert(self._count, at, n_new.astype(np.int32))
        if len(idx) == 0:
            return 0
        keys = np.sort(fine[idx])
        self._recent = np.insert(self._recent, np.searchsorted(self._recent, keys), keys)
        if len(self._recent) > max(MERGE_MIN, len(self._fine) >> 3):
            self._fine = np.insert(self._fine, np.searchsorted(self._fine, self._recent), self._recent)
            self._recent = np.zeros(0, np.int64)
        self._open.append((xyz[idx], np.asarray(rgb[idx], np.uint8),
                           np.asarray(labels[idx], np.uint8)))
        self._n_open += len(idx)
        if self._n_open >= CHUNK:
            self._seal()
        return len(idx)

    def _seal(self) -> None:
        if self._open:
            self._chunks.append(tuple(np.concatenate(a) for a in zip(*self._open)))
            self._open, self._n_open = [], 0

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The kept points in order of arrival, chunk by chunk: ``(xyz [n, 3] float32, rgb [n, 3] uint8,
        labels [n] uint8)``."""
        self._seal()
        yield from self._chunks

    def arrays(self) -> dict[str, np.ndarray]:
        """All kept points as one ``{"xyz", "rgb", "labels"}`` dict (``[M, 3]`` float32 m, ``[M, 3]`` uint8,
        ``[M]`` uint8); it replaces the chunks, so the map is held once."""
        self._seal()
        n = sum(len(c[0]) for c in self._chunks)
        xyz, rgb, lab = np.empty((n, 3), np.float32), np.empty((n, 3), np.uint8), np.empty(n, np.uint8)
        at = 0
        while self._chunks:  # copy chunk by chunk, freeing each: the map is never held twice
            a, b, c = self._chunks.pop(0)
            xyz[at:at + len(a)], rgb[at:at + len(a)], lab[at:at + len(a)] = a, b, c
            at += len(a)
        self._chunks = [(xyz, rgb, lab)] if n else []
        return {"xyz": xyz, "rgb": rgb, "labels": lab}
