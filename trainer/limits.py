"""The bounds on every size the tool reads from a file or a flag, checked before memory is spent.

Each limit is far above what MNIST-sized work needs and far below what would exhaust a small
machine; a value past one ends in an ``error:`` that names the limit. ``docs/limits.md`` lists
them for users.
"""

from __future__ import annotations

#: A YAML recipe, in bytes (the shipped recipes are under 1 KB).
RECIPE_MAX_BYTES = 1 << 20
#: Nodes of a YAML recipe counted with every alias expanded (a recipe has a few dozen).
RECIPE_MAX_NODES = 10_000
#: Nesting depth of a YAML recipe.
RECIPE_MAX_DEPTH = 32

#: Items (digits, or labels) in one IDX file: five times MNIST's 60,000 training digits, so at
#: most 235 MB of 28x28 pixels.
IDX_MAX_ITEMS = 300_000
#: Side of an image stored in an IDX file that predict.py refits to MNIST's convention.
IDX_MAX_SIDE = 4096
#: Pixels of all the non-MNIST-sized images in one IDX file handed to predict.py.
IDX_MAX_REFIT_PIXELS = 50_000_000

#: Pixels of one image file handed to predict.py (a 40-megapixel photo); checked from its header
#: before it is decoded.
IMAGE_MAX_PIXELS = 40_000_000
#: Images one predict.py call reads (IDX inputs included).
PREDICT_MAX_IMAGES = 300_000

#: Training steps of one run. The learning-rate schedule is an array of one float32 per step,
#: kept on the device and in every checkpoint: 5 million steps are 20 MB.
MAX_TOTAL_STEPS = 5_000_000

#: A checkpoint file; MindSpore reads a checkpoint whole.
CHECKPOINT_MAX_BYTES = 1 << 30
#: The metadata string inside a checkpoint.
CHECKPOINT_META_MAX_BYTES = 64 << 20
#: A small JSON file the tool reads back (``latest.json``, a cache entry's ``manifest.json``).
POINTER_MAX_BYTES = 64 << 10

#: Combinations of a ``--sampler grid`` search space (the product of every option's values):
#: Optuna's grid sampler lists them all in memory, and a study holds at most 100,000 trials.
TUNE_GRID_MAX_POINTS = 100_000


def describe(count: int) -> str:
    """``1 << 20`` as ``1 MiB``, other numbers with thousands separators."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count:,}"


#: A run's TensorBoard event files rewound on resume, all together: read record by record, and
#: each record's checksum is computed in Python, so the time grows with the size. The bound
#: is above what a LeNet run logging every step up to :data:`MAX_TOTAL_STEPS` writes.
TENSORBOARD_REWIND_MAX_BYTES = 1 << 30
#: One record of a TensorBoard event file, read by the rewind or written as an image (a record of
#: scalars is a few hundred bytes, ``history.png`` a few hundred KB).
TENSORBOARD_RECORD_MAX_BYTES = 16 << 20
#: Distinct names (tags) a rewind keeps track of; the tool writes a few dozen.
TENSORBOARD_REWIND_MAX_TAGS = 10_000
#: One reply the MLflow process reads from a tracking server (its replies to a training run are
#: a few KB); a longer reply, or one that declares a longer length, ends the reporting.
TRACKING_REPLY_MAX_BYTES = 16 << 20
#: One answer line the training process reads from its MLflow process (a run id, or an error).
TRACKING_ANSWER_MAX_BYTES = 64 << 10

#: Images of one split a data source gives (CIFAR-10's training split has 50,000).
SOURCE_MAX_IMAGES = 2_000_000
#: Side of a data source's square images, and of ``--image-size``.
SOURCE_MAX_SIDE = 1024
#: Bytes of one split's decoded uint8 images (at the source's size and at the network's), so a
#: data set never takes more memory than a small machine has.
SOURCE_MAX_BYTES = 4 << 30
#: Classes of a data source (and outputs of a network).
MAX_CLASSES = 10_000
#: Characters of one class name (a folder name of an image folder, a line of batches.meta.txt).
CLASS_NAME_MAX_CHARS = 200
#: One member of a CIFAR-10 archive, or one of its extracted batch files (a batch of 10,000
#: images is 30,730,000 bytes).
CIFAR_MEMBER_MAX_BYTES = 64 << 20
#: Members of a CIFAR-10 archive (it holds 8).
CIFAR_MAX_MEMBERS = 1_000
#: Bytes of one file of an image folder (a large JPEG photo is a few MB).
IMAGE_FILE_MAX_BYTES = 64 << 20
