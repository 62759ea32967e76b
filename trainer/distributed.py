"""Data-parallel helpers under msrun; the module lives in :mod:`trainer.engine.distributed`, and
this name stays so that ``trainer.distributed.is_main()`` in users' callbacks keeps working."""

from trainer.engine.distributed import (  # noqa: F401
    Cluster,
    all_sum,
    any_worker,
    barrier,
    check_launch,
    current,
    is_main,
    rank,
    world_size,
)
