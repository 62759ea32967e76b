"""Whole batches from decoded arrays, in an order drawn from ``(seed, epoch)``: the feed behind
the default pipeline, several steps per launch and exact resume."""

from __future__ import annotations

import numpy as np


class BatchFeed:
    """Whole batches cut from decoded arrays: one Python call per batch, not per digit.

    ``mindspore.dataset.GeneratorDataset`` iterates it (see :func:`build_dataset`). A training
    feed shuffles with a permutation drawn from ``(seed, epoch)``, so every epoch's order is
    known in advance: a run resumes exactly at any global step (see :func:`resume_at`), and
    data-parallel workers, drawing the same permutation, each take their own slice of every
    global batch. An epoch counts as read only once it is read to the end, so a read that stops
    early (MindSpore's probe of shapes and types) never shifts the order.

    After :meth:`group`, each element holds several consecutive batches stacked on a new first
    axis (``[k, B, C, S, S]`` and ``[k, B]``), for ``trainer.engine.step.LaunchSteps`` to train on
    in one graph launch. The batches and their order are the same either way.

    Args:
        images: ``float32 [N, C, S, S]``, or ``uint8`` with ``values``.
        labels: ``int32 [N]``.
        batch_size: Samples per batch (per worker).
        training: Shuffle every epoch and drop the last incomplete batch.
        seed: Seed of the shuffle (and of the augmentation). Defaults to `0`.
        num_shards: Number of data-parallel workers. Defaults to `1`.
        shard_id: This worker's rank. Defaults to `0`.
        augment: Augment every training batch at random, from ``(seed, epoch, step, shard)``
            (see :mod:`trainer.data.augment`): ``"digits"`` (or True) shifts, rotates and scales,
            ``"natural"`` crops and flips. Defaults to `False`.
        fill: The normalised background value that augmentation fills in, one per channel (or
            one for all). Defaults to `0.0`.
        values: ``float32 [C, 256]`` (or ``[256]`` for one channel), what each uint8 pixel value
            of each channel of ``images`` becomes (see
            :func:`trainer.data.transforms.value_table`); batches are looked up in it as they are
            cut. Defaults to `None` (``images`` are already what the network sees).
        rows: The rows of ``images`` and ``labels`` this feed reads (a held-out split's, or the
            rest), in this order; the arrays are never copied whole. Defaults to `None`: all.
    """

    def __init__(self, images, labels, batch_size: int, *, training: bool, seed: int = 0,
                 num_shards: int = 1, shard_id: int = 0, augment: bool | str = False,
                 fill=0.0, values: np.ndarray | None = None,
                 rows: np.ndarray | None = None) -> None:
        if values is not None and np.ndim(values) == 1:
            values = np.asarray(values)[None]
        self.images, self.labels, self.values, self.rows = images, labels, values, rows
        kind = "digits" if augment is True else augment or None
        self.augment, self.fill = (kind if training else None), fill
        self.batch_size, self.training, self.seed = batch_size, training, seed
        self.num_shards, self.shard_id = num_shards, shard_id
        self.epoch = 0  # the epoch the next full read delivers
        count = len(labels) if rows is None else len(rows)
        self.count = count
        if training:
            self.steps = count // (batch_size * num_shards)
        else:
            self.steps = -(-count // batch_size)
        self.groups: list[tuple[int, int]] | None = None  # in-epoch [start, stop) of each element
        self._start: tuple[int, int] | None = None  # (epoch, step): where a resumed run begins

    def __len__(self) -> int:
        return len(self.groups) if self.groups is not None else self.steps

    def group(self, steps_per_launch: int, cuts: tuple[int, ...] = ()) -> None:
        """Delivers up to ``steps_per_launch`` consecutive batches per element.

        A group never crosses the end of an epoch, nor an in-epoch step that is a multiple of
        one of ``cuts`` (where a callback acts, e.g. the loss monitor's interval), so those
        callbacks still see that exact step. Every epoch is cut the same way; ``1`` delivers
        single batches again.
        """
        if steps_per_launch <= 1:
            self.groups = None
            return
        ends = {self.steps, *(m for c in cuts if c > 0 for m in range(c, self.steps, c))}
        groups, start = [], 0
        for end in sorted(ends):
            while start < end:
                stop = min(start + steps_per_launch, end)
                groups.append((start, stop))
                start = stop
        self.groups = groups

    def start_at(self, global_step: int) -> int:
        """Makes the next read continue at ``global_step`` (a resume).

        Returns:
            How many elements MindSpore's ``set_init_step`` must skip, epochs included: the
            element holding that step is trimmed to begin exactly there.
        """
        epoch, step = divmod(global_step, self.steps)
        self.epoch = epoch
        if self.groups is None:
            self._start = None
            return global_step
        index = next(i for i, (first, stop) in enumerate(self.groups) if first <= step < stop)
        self._start = (epoch, step) if step else None
        return epoch * len(self.groups) + index

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch``: a permutation when training, else the file order."""
        if not self.training:
            order = np.arange(self.count)
        else:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.count)
        return order if self.rows is None else self.rows[order]

    def _batches(self, order: np.ndarray, first: int, stop: int) -> np.ndarray:
        """Indices of the batches ``first`` to ``stop - 1`` of this worker, ``[k, B]``."""
        size, shards = self.batch_size, self.num_shards
        rows = np.arange(first, stop) * shards + self.shard_id
        return order[(rows[:, None] * size + np.arange(size)).reshape(-1)].reshape(-1, size)

    def _augmented(self, index: np.ndarray, epoch: int, first: int) -> np.ndarray:
        """The digits at ``index``, the batches from in-epoch step ``first`` on, as the network
        sees them: looked up in ``values`` and, with ``augment``, each batch transformed with its
        own generator (see :mod:`trainer.data.augment`)."""
        images = self.images[index]
        if self.values is not None:
            images = _look_up(self.values, images)
        if not self.augment:
            return images
        from trainer.data.augment import augment_batch

        batches = images.reshape(-1, *images.shape[-4:])
        out = [augment_batch(batch, np.random.default_rng(
            (self.seed, epoch, first + i, self.shard_id)), self.fill, kind=self.augment)
            for i, batch in enumerate(batches)]
        return np.stack(out).reshape(images.shape)

    def __iter__(self):
        epoch = self.epoch
        order = self.order(epoch)
        if self.groups is None:
            size, shards = self.batch_size, self.num_shards
            for step in range(self.steps):
                first = (step * shards + self.shard_id) * size
                index = order[first:first + size]
                yield self._augmented(index, epoch, step), self.labels[index]
        else:
            begin = self._start[1] if self._start and self._start[0] == epoch else 0
            for first, stop in self.groups:
                # Groups before a resume point are skipped by MindSpore (set_init_step); the one
                # holding it starts exactly there.
                start = max(first, begin) if stop > begin else first
                index = self._batches(order, start, stop)
                yield self._augmented(index, epoch, start), self.labels[index]
        if self._start and self._start[0] == epoch:
            self._start = None
        self.epoch = epoch + 1


def _look_up(values: np.ndarray, images: np.ndarray) -> np.ndarray:
    """``images`` (uint8, channels on the third axis from the end) through the per-channel
    tables ``values [C, 256]``."""
    if len(values) == 1:
        return values[0][images]
    out = np.empty(images.shape, dtype=values.dtype)
    for channel, table in enumerate(values):
        out[..., channel, :, :] = table[images[..., channel, :, :]]
    return out


def feed_dataset(feed: BatchFeed):
    """A ``mindspore.dataset.GeneratorDataset`` over a :class:`BatchFeed` (its ``source``):
    one thread, no worker processes, since a batch is one array slice."""
    import mindspore.dataset as ds

    # Nothing else is attached to the dataset: MindSpore deep-copies a dataset's attributes
    # (all but its source) for every iterator, which would copy the arrays.
    return ds.GeneratorDataset(feed, column_names=["image", "label"], shuffle=False,
                               num_parallel_workers=1, python_multiprocessing=False)


def launch_dataset(dataset, steps_per_launch: int, cuts: tuple[int, ...] = ()):
    """The training dataset regrouped for ``steps_per_launch`` steps per element.

    ``dataset`` must come from :func:`build_dataset` with ``cache=True``; its feed is grouped
    (see :meth:`BatchFeed.group`) and a new dataset is made over it, since MindSpore reads the
    length of a dataset's source once, when the dataset is made.
    """
    feed = getattr(dataset, "source", None)
    if not isinstance(feed, BatchFeed):
        raise ValueError("several steps per launch need the cached feed (build_dataset with "
                         "cache=True)")
    feed.group(steps_per_launch, cuts)
    return feed_dataset(feed)


def resume_at(dataset, global_step: int) -> None:
    """Makes a training dataset of :func:`build_dataset` continue a run at ``global_step``.

    MindSpore's ``set_init_step`` skips the batches of the current epoch that were already
    trained on; the cached feed is told which epoch's order that is (and, when it groups batches
    for several steps per launch, trims the group that holds ``global_step``).
    """
    feed = getattr(dataset, "source", None)
    if isinstance(feed, BatchFeed):
        global_step = feed.start_at(global_step)
    dataset.set_init_step(global_step)
