"""``--augment``, by the kind of images: random shifts, small rotations and scaling of digits;
random crops (from the image padded by 4 pixels) and horizontal flips of photos, as He et al.
trained their CIFAR ResNets.

Each batch is transformed on the host, vectorised, with parameters drawn from a generator seeded
by ``(seed, epoch, step, shard)``: the same run gives the same images, and a resumed run continues
with exactly the batches it would have seen.
"""

from __future__ import annotations

import numpy as np

# What suits MNIST: its digits are centred by mass within about two pixels, upright within a few
# degrees, and fitted to a 20x20 box, so moderate jitter keeps them digits.
SHIFT_PIXELS = 2.0  # at MNIST's 28x28; scaled with the image
ROTATION_DEGREES = 10.0
SCALE_RANGE = (0.9, 1.1)
# What suits 32x32 photos (CIFAR-10): crops of the image padded by 4 pixels, and mirror images.
CROP_PADDING = 4

_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size not in _GRIDS:
        centre = (size - 1) / 2.0
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - np.float32(centre)
        _GRIDS[size] = (ys.reshape(1, -1), xs.reshape(1, -1))
    return _GRIDS[size]


def augment_batch(images: np.ndarray, rng: np.random.Generator, fill,
                  kind: str = "digits") -> np.ndarray:
    """A randomly augmented copy of a batch.

    Args:
        images: ``float32 [N, C, S, S]``, normalised as the network sees them.
        rng: The batch's generator.
        fill: The value of the background that moves in from outside (a normalised 0), one per
            channel or one for all.
        kind: ``"digits"`` (shift, rotate, scale) or ``"natural"`` (crop and flip). Defaults to
            `"digits"`.

    Returns:
        A new ``float32 [N, C, S, S]`` array.
    """
    fills = np.broadcast_to(np.asarray(fill, dtype=np.float64).reshape(-1), (images.shape[1],))
    if kind == "natural":
        return crop_and_flip(images, rng, fills)
    if images.shape[1] == 1:
        return _warp(images, rng, float(fills[0]))
    # Every channel of an image moves alike: the same generator state for each.
    state = rng.bit_generator.state
    planes = []
    for channel in range(images.shape[1]):
        rng.bit_generator.state = state
        planes.append(_warp(images[:, channel:channel + 1], rng, float(fills[channel])))
    return np.concatenate(planes, axis=1)


def crop_and_flip(images: np.ndarray, rng: np.random.Generator, fills) -> np.ndarray:
    """Each image cropped at a random place from itself padded by :data:`CROP_PADDING` pixels
    of ``fills`` (per channel), and mirrored left to right with probability 1/2."""
    count, channels, size, _ = images.shape
    pad = CROP_PADDING
    padded = np.empty((count, channels, size + 2 * pad, size + 2 * pad), dtype=np.float32)
    padded[...] = np.asarray(fills, dtype=np.float32)[None, :, None, None]
    padded[:, :, pad:pad + size, pad:pad + size] = images
    top = rng.integers(0, 2 * pad + 1, count)
    left = rng.integers(0, 2 * pad + 1, count)
    flip = rng.random(count) < 0.5
    steps = np.arange(size)
    rows = top[:, None] + steps  # [N, S]
    cols = left[:, None] + np.where(flip[:, None], steps[::-1], steps)
    index = np.arange(count)[:, None, None, None]
    return padded[index, np.arange(channels)[None, :, None, None], rows[:, None, :, None],
                  cols[:, None, None, :]]


def _warp(images: np.ndarray, rng: np.random.Generator, fill: float) -> np.ndarray:
    """A randomly shifted, rotated and scaled copy of a batch of one channel."""
    count, _, size, _ = images.shape
    angle = np.deg2rad(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES, count))
    scale = rng.uniform(*SCALE_RANGE, count)
    shift = (rng.uniform(-SHIFT_PIXELS, SHIFT_PIXELS, (count, 2)) * size / 28.0)
    cos = (np.cos(angle) / scale).astype(np.float32)[:, None]
    sin = (np.sin(angle) / scale).astype(np.float32)[:, None]
    ys, xs = _grid(size)
    dy = ys - shift[:, :1].astype(np.float32)
    dx = xs - shift[:, 1:].astype(np.float32)
    # Where each output pixel comes from (the inverse of rotate-and-scale after the shift), in
    # the coordinates of the image padded by one pixel of background.
    offset = np.float32((size - 1) / 2.0 + 1.0)
    src_y = np.clip(cos * dy - sin * dx + offset, 0, size)
    src_x = np.clip(sin * dy + cos * dx + offset, 0, size)
    y0, x0 = src_y.astype(np.int32), src_x.astype(np.int32)  # floor: both are >= 0
    wy, wx = src_y - y0.astype(np.float32), src_x - x0.astype(np.float32)
    width = size + 2
    padded = np.full((count, width, width), fill, dtype=np.float32)
    padded[:, 1:-1, 1:-1] = images[:, 0]
    flat = padded.reshape(-1)
    index = y0 * width + x0 + (np.arange(count, dtype=np.int32) * width * width)[:, None]
    top_left, top_right = flat[index], flat[index + 1]
    bottom_left, bottom_right = flat[index + width], flat[index + width + 1]
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    return (top + (bottom - top) * wy).reshape(count, 1, size, size)
