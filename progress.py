"""Progress bars for long per-frame work (tqdm, with frames/s), or a silent stand-in."""

from __future__ import annotations


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def frame_bar(enabled: bool, total: int, desc: str):
    """A tqdm bar over ``total`` frames showing frames/s when ``enabled``, else a no-op with the
    same ``update(n)`` / ``close()``."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="frame")
