"""genmnist: the legacy TF1 DCGAN-style MNIST GAN, ported to TensorFlow 2 / Keras 3.

Importing the package stays light (no TensorFlow): every command parses its flags,
and answers ``--help``, before :func:`import_tensorflow` loads TensorFlow.
"""

import os
import re
import sys
import tempfile

# TensorFlow's C++ start-up lines (CUDA probing, CPU feature notes, and on a machine
# without a GPU "failed call to cuInit ... UNKNOWN ERROR (303)", which reads like a
# failure) bury the progress output.  Level 3 hides C++ messages up to errors; Python
# exceptions still surface, and a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Lines TensorFlow's shared libraries log while they load, before TensorFlow reads
# TF_CPP_MIN_LOG_LEVEL (absl's pre-initialisation logging ignores it): the INFO notes that
# no CUDA driver was found and that oneDNN's kernels are on (once per library that loads them), and
# absl's warning that precedes them.  No setting hides them, so import_tensorflow drops them where the
# level hides INFO lines.
_EARLY_INFO = re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
                         r"|^I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
                         r"|^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on")

# Every command's --help ends with this.
TF_LOG_HINT = ("TensorFlow's C++ start-up messages are hidden by default; run with TF_CPP_MIN_LOG_LEVEL=0 "
               "to see them.")


def import_tensorflow():
    """Import TensorFlow without the start-up lines the log level means to hide; other output passes.

    The lines are written to file descriptor 2 by C++ code, so the import runs with fd 2
    on a temporary file, whose lines are then copied back to stderr minus ``_EARLY_INFO``.
    TensorFlow's numerics and settings are untouched; TF_CPP_MIN_LOG_LEVEL=0 shows everything.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("", "0"):
        import tensorflow
        return tensorflow
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(terminal, 2)
            os.close(terminal)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _EARLY_INFO.match(line.rstrip("\n"))))
            sys.stderr.flush()
    return tensorflow
