"""Benchmarks, run as modules from the repository root: ``python -m bench.speed`` etc."""

import genmnist

genmnist.import_tensorflow()  # every benchmark needs it: loaded once, without its start-up lines
