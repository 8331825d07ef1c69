"""TensorFlow's settings for parity, imported before TensorFlow by the harness (``parity.cli``, ``parity.checks``).

oneDNN reorders float arithmetic; parity compares rounding, so it must be off before TensorFlow is
imported.  The package's ``__init__`` does not set it: importing ``parity.legacy_train`` or
``parity.legacy_predict`` (the legacy commands' command lines) leaves TensorFlow's defaults as
``python -m legacy_v1.train`` and ``legacy_v1.predict`` always ran with them.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
