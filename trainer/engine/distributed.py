"""Data-parallel training under MindSpore's own launcher, ``msrun``.

``msrun --worker_num=N --local_worker_num=N --master_port=P train.py ... --distributed`` starts one
scheduler process and N workers, all running the same command line, and tells each process its
part through environment variables: ``MS_ROLE`` (``MS_SCHED`` or ``MS_WORKER``), ``MS_WORKER_NUM``,
``MS_SCHED_HOST``, ``MS_SCHED_PORT``, ``MS_TOPO_TIMEOUT`` (msrun's ``--cluster_time_out``) and, for
workers, ``RANK_ID`` / ``MS_NODE_ID``. :func:`setup` joins that cluster
(``mindspore.communication.init()``; in the scheduler process it never returns) and sets
``DATA_PARALLEL`` with ``gradients_mean=True``, so ``TrainOneStepCell`` averages the gradients of
all workers before every update.

Everything else that depends on being one of several processes lives here too: rank and size
(:func:`rank`, :func:`world_size`, :func:`is_main`), and the few host-side collectives the trainer
needs (agreeing on a run name, on stopping after a signal, a barrier before exiting). MindSpore's
CPU collectives sum ``float32`` values only, so these helpers encode what they exchange that way.

A collective waits for every worker. On CPU it gives up after ``MS_NODE_TIMEOUT`` seconds (30 by
default), which is also how long the scheduler waits for a silent worker; a worker that died or
stopped early therefore makes the others fail with an error within about that time, not hang.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainer.config import TrainConfig
from trainer.device import set_mode_and_device
from trainer.errors import ConfigError, UserError
from trainer.logs import setup_logging

ROLE_VAR = "MS_ROLE"
WORKER = "MS_WORKER"
SCHEDULER = "MS_SCHED"
# What MindSpore's errors say when a collective or the cluster lost a worker: a collective kernel
# that gave up waiting, the scheduler's verdict on a silent worker, or the heartbeat's.
_PEER_FAILURE_SIGNS = ("AllReduce", "AllGather", "Broadcast", "ReduceScatter", "timed out node",
                       "state of the cluster is error", "abnormal node")
MSRUN_LINE = ("msrun --worker_num=2 --local_worker_num=2 --master_port=8118 --join=True "
              "--log_dir=msrun_logs train.py --distributed [options]")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a data-parallel run.

    Attributes:
        rank: The worker's global rank, 0 to ``size - 1``; 0 in a single-process run.
        size: The number of workers; 1 in a single-process run.
        distributed: Whether :func:`setup` joined an msrun cluster (also true for one worker).
    """

    rank: int = 0
    size: int = 1
    distributed: bool = False

    @property
    def main(self) -> bool:
        """Whether this process is the one that writes files and prints progress (rank 0)."""
        return self.rank == 0


_cluster = Cluster()


def current() -> Cluster:
    """The cluster this process joined, or the single-process default."""
    return _cluster


def rank() -> int:
    """This worker's rank (0 without ``--distributed``)."""
    return _cluster.rank


def world_size() -> int:
    """The number of data-parallel workers (1 without ``--distributed``)."""
    return _cluster.size


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes checkpoints, history and logs.

    Example:
        >>> from trainer.engine import distributed
        >>> distributed.is_main()  # a single-process run is its own main process
        True
    """
    return _cluster.main


def msrun_role(environ: Mapping[str, str] | None = None) -> str | None:
    """``"MS_WORKER"`` or ``"MS_SCHED"`` when msrun started this process, else None."""
    env = os.environ if environ is None else environ
    role = env.get(ROLE_VAR)
    return role if role in (WORKER, SCHEDULER) else None


def check_launch(distributed: bool, environ: Mapping[str, str] | None = None) -> None:
    """Refuses ``--distributed`` outside msrun, and msrun without ``--distributed``.

    Without msrun's variables ``init()`` would wait for a scheduler that does not exist or fail
    with a C++ error; under msrun without ``--distributed`` every worker (and the scheduler)
    would train on the whole data set and write the same files.

    Raises:
        ConfigError: naming the mismatch and the command line that works.
    """
    env = os.environ if environ is None else environ
    role = msrun_role(env)
    if distributed and role is None:
        missing = [v for v in (ROLE_VAR, "MS_WORKER_NUM", "MS_SCHED_HOST", "MS_SCHED_PORT")
                   if v not in env]
        raise ConfigError(
            "--distributed needs MindSpore's launcher: this process was not started by msrun (the "
            f"environment lacks {', '.join(missing) or ROLE_VAR}), so there are no other workers "
            f"to train with. Launch it as: {MSRUN_LINE} (see the README section 'Several "
            "processes and machines: msrun'), or drop --distributed to train in this process.")
    if not distributed and role is not None:
        raise ConfigError(
            f"train.py is running under msrun ({ROLE_VAR}={role}) without --distributed: every "
            "worker would train on the whole data set on its own and write the same files. Add "
            "--distributed after train.py on the msrun line to train data-parallel. Evaluation "
            "(--eval-only) and export run in one process: start them with python, not msrun.")


def _check_port(host: str, port: int) -> None:
    """Refuses a scheduler port that another process is listening on (scheduler role only)."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Like the scheduler itself: a port left in TIME_WAIT by an earlier run is fine.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return  # not ours to judge (e.g. the address is not local); init() will report it
        timeout = os.environ.get("MS_TOPO_TIMEOUT", "600")
        raise ConfigError(
            f"The msrun scheduler port {port} on {host} is already in use by another process "
            "(perhaps another msrun job), so the cluster cannot form; the workers wait for it "
            f"until msrun's --cluster_time_out ({timeout} s) runs out. Start msrun with another "
            "--master_port (a free port between 1024 and 65535; 'ss -ltn' lists the ports in "
            "use), or stop the process that holds this one.") from None
    finally:
        probe.close()


def start(cfg: TrainConfig) -> Cluster:
    """Sets MindSpore up for a training run: checks the launch, sets mode and device
    (:func:`trainer.device.set_mode_and_device`, the one device set-up), joins msrun's cluster
    and seeds every generator.

    Every worker of a data-parallel run uses the same seeds: identical initial weights, and one
    shuffled order of the training set that the shards partition.

    Raises:
        ConfigError: a launch that does not fit ``--distributed``, or an unusable device.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    import numpy as np

    check_launch(cfg.distributed)
    set_mode_and_device(cfg.mode, cfg.device)
    cluster = setup() if cfg.distributed else current()
    if not cluster.main:
        setup_logging(logging.WARNING, prefix=f"[worker {cluster.rank}] ")
    ms.set_seed(cfg.seed)
    ds.config.set_seed(cfg.seed)
    np.random.seed(cfg.seed)
    return cluster


def setup() -> Cluster:
    """Joins the msrun cluster and turns on data parallelism (once per process).

    Call after the device is set and before any network is built: ``TrainOneStepCell`` reads the
    parallel context when it is created. In msrun's scheduler process ``init()`` runs the
    scheduler until the workers finish and then ends the process, so nothing after this call runs
    there.

    Returns:
        The :class:`Cluster` this worker belongs to.

    Raises:
        ConfigError: the scheduler port is taken.
        UserError: the cluster could not be formed (its message names the likely causes).
    """
    global _cluster
    if _cluster.distributed:
        return _cluster
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    host = os.environ.get("MS_SCHED_HOST", "127.0.0.1")
    port = os.environ.get("MS_SCHED_PORT", "")
    if msrun_role() == SCHEDULER and port.isdigit():
        _check_port(host, int(port))
    try:
        init()
    except RuntimeError as exc:
        raise UserError(
            f"This worker could not join the msrun cluster at {host}:{port} "
            f"({_first_line(exc)}). Usual causes: --master_port is in use by another program "
            "(start msrun with another --master_port), a worker failed before joining (read its "
            "log in msrun's --log_dir), or --worker_num does not match the workers started on "
            "all machines (--local_worker_num on each, --node_rank and --master_addr on the "
            "others).", exit_code=1) from None
    # One all-reduce per step for all gradients (in buckets of up to 32 MB) instead of one per
    # parameter: on CPU each collective is a round trip between the processes.
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True,
                                 comm_fusion={"allreduce": {"mode": "size", "config": 32}})
    _cluster = Cluster(rank=get_rank(), size=get_group_size(), distributed=True)
    return _cluster


def all_sum(values: Sequence[float]) -> list[float]:
    """Sums ``values`` over all workers (every worker must call it at the same point).

    Values travel as ``float32`` (the only type MindSpore's CPU collectives reduce), so whole
    numbers stay exact below 2**24. Without other workers the values come back unchanged.
    """
    if _cluster.size <= 1:
        return [float(v) for v in values]
    import numpy as np
    from mindspore import Tensor, ops

    summed = ops.AllReduce()(Tensor(np.asarray(values, dtype=np.float32)))
    return [float(v) for v in summed.asnumpy()]


def any_worker(flag: bool) -> bool:
    """Whether ``flag`` is true on at least one worker (a collective call)."""
    return all_sum([1.0 if flag else 0.0])[0] > 0


def barrier() -> None:
    """Returns once every worker has reached it."""
    all_sum([0.0])


def shared_time(now: float) -> int:
    """Rank 0's ``now`` (whole seconds) on every worker, so all agree on a time-stamped name."""
    seconds = int(now) if _cluster.main else 0
    # Two halves below 2**24 each survive the float32 sum exactly.
    high, low = all_sum([seconds >> 16, seconds & 0xFFFF])
    return (int(high) << 16) + int(low)


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another worker stopped answering."""
    text = str(exc)
    return (isinstance(exc, RuntimeError) and _cluster.size > 1
            and any(sign in text for sign in _PEER_FAILURE_SIGNS))


def peer_failure(exc: BaseException, resume: str = "--resume auto --run-name NAME") -> UserError:
    """The message for :func:`is_peer_failure`: another worker is the place to look.

    Args:
        exc: The error MindSpore raised.
        resume: The options that continue the run. Defaults to `"--resume auto --run-name NAME"`.
    """
    timeout = os.environ.get("MS_NODE_TIMEOUT", "30")
    return UserError(
        f"Worker {_cluster.rank} lost contact with the other workers during a collective "
        f"operation ({_first_line(exc)}): another worker stopped, crashed or was killed, or was "
        f"busy for longer than MS_NODE_TIMEOUT ({timeout} s). Its own log in msrun's --log_dir "
        f"says why. Fix that, then continue from the last checkpoint with the same msrun line "
        f"plus {resume}.", exit_code=1)


def _first_line(exc: BaseException) -> str:
    """The first sentence of MindSpore's message (the rest is a C++ stack or a list of hints)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    sentence, dot, _ = lines[0].partition(". ")
    return sentence + ("." if dot else "")
