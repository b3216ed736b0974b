"""Mapping: semantic occupancy, ground/elevation with traversability, TSDF mesh, exports.

``MapBuilder`` (``fuse4d.mapping.builder``) is the stage the pipeline drives;
imports are lazy so ``import fuse4d.mapping`` stays light.
"""

from __future__ import annotations

__all__ = ["MapBuilder", "MappingConfig"]


def __getattr__(name: str):
    if name == "MapBuilder":
        from fuse4d.mapping.builder import MapBuilder
        return MapBuilder
    if name == "MappingConfig":
        from fuse4d.mapping.config import MappingConfig
        return MappingConfig
    raise AttributeError(f"module 'fuse4d.mapping' has no attribute {name!r}")
