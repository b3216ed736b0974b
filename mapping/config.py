"""Settings of the mapping stage (occupancy, ground/elevation, mesh); light module, no heavy imports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fuse4d.errors import ConfigError


@dataclass
class MappingConfig:
    """Every knob of :class:`~fuse4d.mapping.MapBuilder` (units: m, degrees where named).

    Occupancy (log-odds, OctoMap-like): voxel_size, l_hit, l_miss, l_min, l_max,
        occupied_threshold (log-odds above it = occupied), max_range (points farther
        carve free space up to it but add no hit), min_range; normals (scan normals give a
        ray's incidence on its surface: carving stops voxel / cos short of it; off = one voxel),
        normal_neighbours (k of the normal PCA), range_sigma (m, the LiDAR's range noise: a
        non-ground return up to 3σ from the plane of its neighbours, along its ray, is moved onto
        it before it is binned; 0 = off; needs normals), carve_core (a ray frees a voxel only through
        the central fraction of its edge, 1 = anywhere), label_range (m: a point's class vote
        weighs min(1, (label_range / range)²), at least 1/16; 0 = equal votes); thin_ground
        (a voxel holding both ground and object votes is ground when over half of it lies below
        the elevation map's ground height, the object's class when under this fraction does).
    Ground segmentation: ground_cell (m, grid of the lowest-point filter),
        ground_window (cells, odd), ground_max_slope (rise per metre between cells),
        ground_height (m above the local ground estimate a point may be and stay ground).
    Elevation: elevation_resolution, elevation_max_range (m, farther points are left
        out of the elevation map), elevation_sigma0 (m, range-independent height
        noise), elevation_sigma_per_m (height noise per metre of range),
        max_slope_deg, max_step (m), max_roughness (m): the traversability rule;
        elevation_top_residual (m: a cell's height is its top, the mean raised by the local
        plane's gradient, where the 3 × 3 plane fit leaves at most this RMS; elsewhere the mean),
        elevation_moving (a top surface above the ground layer that at least this many times as
        many scans saw moving points over as confirmed it is dropped for the ground layer: a moving
        object the dynamics missed in a scan or two; 0 = off), elevation_under (the same for a top
        that more than this many times as many later scans saw only the ground under; 0 = off:
        it also drops tree crowns the field of view cuts off near by), elevation_moving_window (cells,
        odd: the moving points are counted over this window around the cell, as an object's flagged
        points fall beside the cell its missed ones topped).
    Mesh (TSDF, Open3D VoxelBlockGrid): mesh (on/off), tsdf_voxel (m; None = 0.1 m for
        LiDAR depth, 0.02 m for depth cameras), tsdf_trunc_voxels (truncation in
        voxels), mesh_max_depth (m), mesh_every (integrate every n-th frame).
    Point map: point_voxel (m; at most one point per voxel of this edge in the exported static
        point map), point_max_per_voxel (at most this many points per occupancy voxel of
        voxel_size, so revisits do not grow the map once a place is full; 0 = no cap).
    """

    voxel_size: float = 0.5
    l_hit: float = 0.85
    l_miss: float = -0.4
    l_min: float = -2.0
    l_max: float = 3.5
    occupied_threshold: float = 0.0
    normals: bool = True
    carve_core: float = 0.5
    label_range: float = 10.0
    thin_ground: float = 0.1
    normal_neighbours: int = 12
    range_sigma: float = 0.02
    max_range: float = 80.0
    min_range: float = 1.0
    ground_cell: float = 1.0
    ground_window: int = 5
    ground_max_slope: float = 0.3
    ground_height: float = 0.25
    elevation_resolution: float = 0.5
    elevation_max_range: float = 40.0
    elevation_sigma0: float = 0.02
    elevation_sigma_per_m: float = 0.001
    max_slope_deg: float = 20.0
    max_step: float = 0.25
    max_roughness: float = 0.1
    elevation_top_residual: float = 0.04
    elevation_moving: float = 0.5
    elevation_under: float = 0.0
    elevation_moving_window: int = 5
    mesh: bool = True
    tsdf_voxel: float | None = None
    tsdf_trunc_voxels: float = 4.0
    mesh_max_depth: float = 40.0
    mesh_every: int = 1
    point_voxel: float = 0.1
    point_max_per_voxel: int = 16

    def __post_init__(self) -> None:
        positive = ("voxel_size", "l_hit", "l_max", "max_range", "ground_cell", "ground_height",
                    "elevation_resolution", "elevation_max_range", "elevation_sigma0", "max_slope_deg", "max_step", "max_roughness",
                    "tsdf_trunc_voxels", "mesh_max_depth", "point_voxel")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"MappingConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not (self.l_miss < 0 and self.l_min < 0):
            raise ConfigError(f"MappingConfig.l_miss and l_min must be < 0, got {self.l_miss}, {self.l_min}")
        if self.ground_window < 1 or self.ground_window % 2 == 0:
            raise ConfigError(f"MappingConfig.ground_window must be an odd number >= 1, got {self.ground_window}")
        if not 0 <= self.thin_ground <= 0.5:
            raise ConfigError(f"MappingConfig.thin_ground must be in [0, 0.5], got {self.thin_ground!r}")
        if not self.range_sigma >= 0:
            raise ConfigError(f"MappingConfig.range_sigma must be >= 0, got {self.range_sigma!r}")
        if not self.elevation_top_residual >= 0:
            raise ConfigError(f"MappingConfig.elevation_top_residual must be >= 0, got {self.elevation_top_residual!r}")
        if self.elevation_moving_window < 1 or self.elevation_moving_window % 2 == 0:
            raise ConfigError(f"MappingConfig.elevation_moving_window must be an odd number >= 1, "
                              f"got {self.elevation_moving_window}")
        for name in ("elevation_moving", "elevation_under"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"MappingConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.label_range >= 0:
            raise ConfigError(f"MappingConfig.label_range must be >= 0, got {self.label_range!r}")
        if not 0 < self.carve_core <= 1:
            raise ConfigError(f"MappingConfig.carve_core must be in (0, 1], got {self.carve_core}")
        if self.normal_neighbours < 4:
            raise ConfigError(f"MappingConfig.normal_neighbours must be >= 4, got {self.normal_neighbours}")
        if self.point_max_per_voxel < 0:
            raise ConfigError(f"MappingConfig.point_max_per_voxel must be >= 0, got {self.point_max_per_voxel}")
        if self.mesh_every < 1:
            raise ConfigError(f"MappingConfig.mesh_every must be >= 1, got {self.mesh_every}")
        if self.tsdf_voxel is not None and not self.tsdf_voxel > 0:
            raise ConfigError(f"MappingConfig.tsdf_voxel must be > 0 or null, got {self.tsdf_voxel!r}")
        if not 0 <= self.min_range < self.max_range:
            raise ConfigError(f"MappingConfig needs 0 <= min_range < max_range, got {self.min_range}, {self.max_range}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/zarr attrs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "MappingConfig":
        """Build from a dict; unknown keys raise ConfigError."""
        from fuse4d.sections import section_from_dict
        return section_from_dict(cls, d, "mapping")

    @classmethod
    def from_saved(cls, d: dict[str, Any] | None) -> tuple["MappingConfig", list[str]]:
        """Build from a run's saved ``mapping`` section, which another fuse4d version may have
        written: settings this version does not know are left out instead of refused.

        Returns:
            ``(config, names of the settings left out)``.
        """
        from dataclasses import fields
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        return cls.from_dict({k: v for k, v in d.items() if k in known}), sorted(set(d) - known)
