"""The shipped ``collector-config/default.yaml`` bounds memory (issue 14, finding 4): under
memory-heavy overload the process reached 4.8 GiB without a ``memory_limiter``."""

from __future__ import annotations

from pathlib import Path

from driftline.collector_config import __file__ as _collector_config_init
from driftline.processor.service.config import ComponentID, load_config

DEFAULT_YAML = Path(_collector_config_init).parent / "default.yaml"
# A small container: 1 GiB of memory, of which the limiter must leave headroom.
SMALL_CONTAINER_MIB = 1024


def test_default_config_limits_memory_first_in_every_pipeline(tmp_path: Path) -> None:
    environ = {"DRIFTLINE_PROFILES": str(tmp_path), "DRIFTLINE_OUTPUT": str(tmp_path)}
    config = load_config(DEFAULT_YAML, environ=environ)
    limiter = config.processors[ComponentID("memory_limiter")]
    assert 0 < limiter.limit_mib < SMALL_CONTAINER_MIB
    assert 0 < limiter.spike_limit_mib < limiter.limit_mib
    for pid, pipeline in config.pipelines.items():
        assert pipeline.processors[0] == ComponentID("memory_limiter"), pid
    overridden = load_config(DEFAULT_YAML, environ={**environ,
                                                    "DRIFTLINE_MEMORY_LIMIT_MIB": "300"})
    assert overridden.processors[ComponentID("memory_limiter")].limit_mib == 300
