"""Export a trained generator for use outside genmnist.

Two artefacts in the export directory:

* ``generator.keras``: the Keras model (``keras.models.load_model``; the custom
  ``BatchNorm`` layer registers itself when ``genmnist.models`` is imported).
* ``saved_model/``: a TensorFlow SavedModel whose ``serving_default`` signature
  maps ``z`` float32 [n, 100] to ``images`` uint8 [n, 28, 28] (0..255) and
  ``raw`` float32 [n, 28, 28, 1] in the preset's pixel range.  It needs only
  TensorFlow to load (``tf.saved_model.load``), not this package.
"""

import os
import shutil

import tensorflow as tf

from genmnist.files import cannot_write
from genmnist.images import to_uint8_tensor
from genmnist.models import Z_DIM


class _Serving(tf.Module):
    def __init__(self, generator, pixel_range):
        super().__init__()
        self.generator = generator
        self.pixel_range = tuple(pixel_range)

    @tf.function(input_signature=[tf.TensorSpec([None, Z_DIM], tf.float32, name="z")])
    def serve(self, z):
        raw = self.generator(z, training=False)
        return {"images": to_uint8_tensor(raw, self.pixel_range), "raw": raw}


def export_generator(generator, preset, export_dir):
    """Write both artefacts into ``export_dir``.tmp, then rename it: an export directory is always whole."""
    partial = export_dir + ".tmp"
    shutil.rmtree(partial, ignore_errors=True)  # an earlier export's, cut short
    try:
        os.makedirs(partial)
        generator.save(os.path.join(partial, "generator.keras"))
        module = _Serving(generator, preset.pixel_range)
        tf.saved_model.save(module, os.path.join(partial, "saved_model"),
                            signatures={"serving_default": module.serve})
        shutil.rmtree(export_dir, ignore_errors=True)
        os.replace(partial, export_dir)
    except BaseException as err:  # a full disk or an interrupt: no half export stays
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, (OSError, tf.errors.OpError)):
            raise cannot_write(export_dir, err) from None
        raise
    return export_dir
