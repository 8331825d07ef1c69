"""Model outputs to pictures: x255 scaling, grids, PNGs (cv2) and the progress GIF (Pillow).

The legacy port's classic failure was saving [0, 1] floats as an image, which
looks black; here every image goes through :func:`to_uint8`, which maps the
preset's pixel range onto 0..255 (legacy: ``clip(x * 255, 0, 255)``).
"""

import glob
import math
import os

import cv2
import numpy as np
import tensorflow as tf
from PIL import Image

from genmnist.files import replacing


def to_uint8_tensor(images, pixel_range):
    """Float images [n, 28, 28, 1] in ``pixel_range`` -> uint8 [n, 28, 28]: scale, round, clip.

    In TensorFlow so the exported SavedModel uses this very function.
    """
    low, high = pixel_range
    scaled = (tf.convert_to_tensor(images, tf.float32)[..., 0] - low) * (255.0 / (high - low))
    return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8)


def to_uint8(images, pixel_range):
    """NumPy result of :func:`to_uint8_tensor`."""
    return to_uint8_tensor(images, pixel_range).numpy()


def grid(images_uint8, columns=None, pad=2):
    """Tile [n, h, w] uint8 images into one picture with ``pad`` black pixels between tiles."""
    n, h, w = images_uint8.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad), np.uint8)
    for i, image in enumerate(images_uint8):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + h, x:x + w] = image
    return canvas


def png_bytes(image_uint8):
    """The PNG encoding of a uint8 image: encoded in memory, so a short write shows as an OSError."""
    ok, encoded = cv2.imencode(".png", image_uint8)
    if not ok:
        raise ValueError(f"cv2 could not encode an image of shape {image_uint8.shape} as PNG")
    return encoded.tobytes()


def write_png(path, image_uint8):
    """Write whole or not at all (:func:`genmnist.files.replacing`): cv2.imwrite would report success
    for a PNG a full disk cut short."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(png_bytes(image_uint8))


def write_gif(png_paths, path, frame_ms=400):
    """An animated GIF of the sample grids in order, the last frame held longer."""
    frames = [Image.open(p).convert("L") for p in png_paths]
    if not frames:
        return
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 4]
    with replacing(path) as tmp:
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def milestone_pngs(samples_dir):
    return sorted(glob.glob(os.path.join(samples_dir, "step_*.png")))
