"""Joining Ray: one place that turns the ``ray`` config section into ``ray.init``."""

from __future__ import annotations

import logging
import os

from deepcoder.config import Config


def init_ray(config: Config, *, log_to_driver: bool = True) -> bool:
    """Join ``ray.address`` (or ``RAY_ADDRESS``, as under ``ray job submit``) or start a local cluster
    sized by ``ray.num_cpus`` / ``ray.num_gpus``. Returns True when this call started Ray, so the
    caller knows whether to shut it down; does nothing if Ray is already up."""
    import ray

    if ray.is_initialized():
        return False
    joining = config.ray.address or os.environ.get("RAY_ADDRESS")
    local = not joining
    # address="local": never join a stray `ray start` cluster by accident (ray.address: auto does)
    ray.init(address=joining or "local", num_cpus=config.ray.num_cpus if local else None,
             num_gpus=config.ray.num_gpus if local else None, include_dashboard=False if local else None,
             log_to_driver=log_to_driver, logging_level=logging.WARNING)
    return True
