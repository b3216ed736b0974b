"""MappingConfig: strict for what a user writes, lenient for what another version saved in a run."""

import pytest

from fuse4d.errors import ConfigError
from fuse4d.mapping.config import MappingConfig


def test_a_run_saved_by_another_version_still_reads_its_settings():
    saved = MappingConfig(voxel_size=0.4, max_step=0.3).to_dict() | {"elevation_transient": 1.0}
    with pytest.raises(ConfigError, match=r"unknown mapping setting mapping\.elevation_transient"):
        MappingConfig.from_dict(saved)
    cfg, dropped = MappingConfig.from_saved(saved)
    assert (cfg.voxel_size, cfg.max_step) == (0.4, 0.3) and dropped == ["elevation_transient"]
    with pytest.raises(ConfigError, match="voxel_size"):        # values are still checked
        MappingConfig.from_saved({"voxel_size": -1.0})
