"""genmnist: the legacy TF1 DCGAN-style MNIST GAN, ported to TensorFlow 2 / Keras 3."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries the
# progress output on a CPU machine; users can still set the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
