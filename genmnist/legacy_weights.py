"""Read a legacy TF1 name-based checkpoint and copy its weights into Keras variables.

``genmnist.convert`` and ``genmnist.train --init-from`` both start from a legacy
checkpoint; the name table comes from :func:`genmnist.models.legacy_variables`.
"""

import os
import re

from genmnist.errors import UserError

_OPTIMIZER_STATE = re.compile(r"/Adam(_\d+)?$|^beta[12]_power(_\d+)?$")
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"  # present in object-based (TF2) checkpoints only
_GENMNIST_FIX = ("sample its run with genmnist.sample --run RUN_DIR, or write a legacy checkpoint from it "
                 "with genmnist.convert --to-legacy LEGACY_DIR RUN_DIR")


def _names(names, limit=8):
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_legacy(path):
    """{legacy name: array} of a TF1 checkpoint (directory or prefix), optimizer slots dropped."""
    import tensorflow as tf

    from genmnist import rundir

    if os.path.isfile(rundir.path(path, rundir.CONFIG)):
        raise UserError(f"{path} is a genmnist run directory, not a legacy checkpoint; {_GENMNIST_FIX}")
    try:
        prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    except ValueError:  # an empty or binary checkpoint index
        prefix = None
    if not prefix or not os.path.exists(prefix + ".index"):
        raise UserError(f"no TF checkpoint at {path}; pass a legacy checkpoint directory or prefix (e.g. OUT/model)")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise UserError(f"{prefix} is not a readable TF checkpoint ({str(err).splitlines()[0][:100]})") from None
    if OBJECT_GRAPH in reader.get_variable_to_shape_map():
        raise UserError(f"{prefix} is a genmnist checkpoint, not a legacy one; {_GENMNIST_FIX}")
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not _OPTIMIZER_STATE.search(name)}, prefix


def assign_legacy(values, table, source):
    """Copy ``values`` into the Keras variables of ``table``; unknown/missing/misshapen names are a UserError."""
    unknown, missing = set(values) - set(table), set(table) - set(values)
    if unknown or missing:
        parts = ([f"unknown variables {_names(unknown)}"] if unknown else []) + (
            [f"missing variables {_names(missing)}"] if missing else [])
        raise UserError(f"{source} is not a legacy GANModel checkpoint: {'; '.join(parts)}")
    wrong = [f"{n} {values[n].shape} (expected {tuple(table[n].shape)})"
             for n in sorted(table) if tuple(values[n].shape) != tuple(table[n].shape)]
    if wrong:
        raise UserError(f"{source} has variables of the wrong shape: {', '.join(wrong)}")
    for name, variable in table.items():
        variable.assign(values[name])
