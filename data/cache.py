"""A frame cache: a view of a sequence that keeps its most recently loaded frames.

The pipeline reads each window twice in a row (the model, then the estimator);
loading a frame is the expensive part for real logs (image decode, scan parse)
and for the synthetic world (ray casting), so the second read is served from
memory. The cache is bounded (``maxsize`` frames).
"""

from __future__ import annotations

from collections import OrderedDict

from fuse4d.data.types import Frame, Sequence


def with_frame_cache(seq: Sequence, maxsize: int = 32) -> Sequence:
    """A view of ``seq`` whose loader remembers the last ``maxsize`` frames it produced.

    Frames are shared between reads: callers must not modify them in place.
    """
    inner = seq._loader
    cache: OrderedDict[int, Frame] = OrderedDict()

    def load(i: int) -> Frame:
        f = cache.get(i)
        if f is not None:
            cache.move_to_end(i)
            return f
        f = inner(i)
        cache[i] = f
        while len(cache) > maxsize:
            cache.popitem(last=False)
        return f

    return Sequence(seq._timestamps, load, seq.calibration, seq.sensors, seq.imu, seq._gt_poses,
                    seq.metadata, seq.name, seq.path, seq.gt_maps, _indices=seq.indices)
