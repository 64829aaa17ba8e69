"""One local Ray for the whole session (`ray.init(num_cpus=2)`), with Daft's runner set to it:
Daft keeps one runner per process, so every Daft test in a worker runs on this Ray."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_daft() -> Iterator[Any]:
    import daft
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        daft.set_runner_ray(noop_if_initialized=True)
        yield daft
    finally:
        ray.shutdown()
