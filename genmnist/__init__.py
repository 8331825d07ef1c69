"""genmnist: the legacy TF1 DCGAN-style MNIST GAN, ported to TensorFlow 2 / Keras 3."""

import os

# TensorFlow's C++ start-up lines (CUDA probing, CPU feature notes, and on a machine
# without a GPU "failed call to cuInit ... UNKNOWN ERROR (303)", which reads like a
# failure) bury the progress output.  Level 3 hides C++ messages up to errors; Python
# exceptions still surface, and a user's own setting wins.  A few lines TensorFlow
# prints before its logging starts ignore the variable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Every command's --help ends with this.
TF_LOG_HINT = ("TensorFlow's C++ start-up messages are hidden by default; run with TF_CPP_MIN_LOG_LEVEL=0 "
               "to see them.")
