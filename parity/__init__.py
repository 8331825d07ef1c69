"""Side-by-side parity of legacy_v1 (tf.compat.v1 graph) and genmnist (Keras 3) in the legacy presets.

``python -m legacy_v1.parity`` (or ``python -m parity``) builds both sides from one
seed, copies v1's initial weights into v2, feeds both identical NumPy inputs, and
climbs TensorFlow's migration-validation ladder: 1 variables -> 2 forward -> 3 losses
-> 4 gradients -> 5 one training step at a time (teacher-forced) -> 6 training
iterations free-running, for the ``GANModel`` pair and then the ``WGANModel`` pair.

Modules: ``tolerances`` (each stage's limits and why), ``rows`` (one comparison each,
the table), ``pairs`` (the two sides with shared weights), ``stages`` (the checks),
``checks`` (the whole run, and the chaos control), ``cli`` (the command line), ``tf_env`` (oneDNN off:
``cli`` and ``checks`` import it before TensorFlow).  ``legacy_train`` and ``legacy_predict`` are the command
lines of ``python -m legacy_v1.train`` and ``legacy_v1.predict`` (product-side glue kept out of ``legacy_v1``).
docs/parity.md records what each stage achieves.
"""
