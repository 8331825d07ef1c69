"""Benchmarks, run as modules from the repository root: ``python -m bench.speed`` etc."""

import genmnist  # noqa: F401  (sets TensorFlow's log level before a benchmark imports TensorFlow)
