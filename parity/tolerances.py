"""How close v1 and v2 must be at each stage, and why; the values achieved are in docs/parity.md.

Element-wise ``|v1 - v2| <= atol + rtol * |v1|`` (np.allclose).  They start from TF's
migration guide (forward rtol 1e-6 / atol 1e-5) and are tightened to what float32 arithmetic
allows with oneDNN and grappler's arithmetic and remapping rewrites off on both sides:

* variables: names, shapes, the optimizer split and the copied values: exact.
* forward, losses: D and the losses run the same kernels in the same order on both sides;
  G(z) differs by rounding only (genmnist's fused batch-norm kernel against v1's
  tf.nn.moments, as contrib batch_norm).
* gradients: tf.gradients and GradientTape accumulate some sums (bias reductions) in another
  order, and the fused batch norm's backward pass is closed-form, so sums with cancellation
  differ in the last bits.  The WGAN-GP gradients also pass through the penalty's double
  backward pass: more reordered sums.
* step, teacher-forced (v2's weights and Adam moments reset to v1's before every step): one
  step's arithmetic.  Adam divides by sqrt(v), which turns rounding differences on near-zero
  gradient elements into update differences up to lr either way, so the trained weights of
  both nets are checked by share: at most a small share of elements may differ by more than
  10% of one Adam step and none by more than 2 lr per optimizer step.  Any real difference
  (a wrong lr, beta, epsilon, z or schedule) moves most elements by a sizeable fraction of lr
  (tests/test_parity.py doubles the critic's lr and shrinks the legacy lr by 20%).  The WGAN-GP
  loss compared is the last critic step's, after 4 untethered critic updates, hence rtol 1e-4; a
  critic lr only 10% off still fails it.
* g_b1..g_b4 feed a batch norm, which subtracts them straight back out: their gradient is
  pure rounding noise, which Adam normalises into lr-sized steps in either direction.
  Untrained variables (bn*/beta, moving statistics) must stay bit-identical.
* training, free-running: a GAN trained with Adam is chaotic, so any rounding difference
  grows; a control run of v1 against itself with one weight nudged by one ulp drifts as far
  (``python -m legacy_v1.parity --control``).  So this stage bounds the drift
  ||v1 - v2|| / ||v1 - v1_initial|| per trained variable; the two random walks of
  g_b1..g_b4 are independent (~1.4 expected), hence their looser bound.  These bounds hold
  at the default 50 iterations; the teacher-forced stage is the precise one.
"""

from genmnist.presets import PRESETS

# (rtol, atol) per stage, element-wise.
TOLERANCES = {
    "variables": (0.0, 0.0),
    "forward": (1e-6, 1e-7),
    "losses": (1e-6, 1e-7),
    "gradients": (1e-5, 1e-6),
    "step": (1e-5, 1e-6),      # teacher-forced step: both losses
    "training": (2e-1, 5e-2),  # free-running: losses per step
}
WGAN_GRADIENTS = (1e-5, 2e-6)
WGAN_STEP_LOSSES = (1e-4, 1e-6)
# Teacher-forced weights by share: (atol, largest share of elements past it).
STEP_WEIGHT_SHARE = (5e-5, 1e-3)   # 10% of one legacy Adam step (lr 5e-4)
WGAN_STEP_SHARE = (1e-5, 1e-3)     # 10% of one legacy WGAN Adam step (lr 1e-4)
STEP_PRE_BN_BIAS = (0.0, 2 * PRESETS["legacy"].learning_rate)  # a noise gradient may flip an Adam step's sign
# Free-running training: (max drift ||v1-v2|| / ||v1-v1_0||, max abs diff) per kind of variable.
TRAINING = {"weights": (5e-1, 5e-2), "pre_bn_bias": (4.0, 5e-2)}
# Biases that feed a batch norm (see the module docstring).
PRE_BN_BIASES = {"g_b1", "g_b2", "g_b3", "g_b4"}


def is_adam_weight(name):
    """A DCGAN weight or bias that Adam trains and that does not feed a batch norm: checked by share."""
    return name.rsplit("/", 1)[-1].startswith(("g_", "d_")) and name not in PRE_BN_BIASES


def step_tolerance(name):
    """Teacher-forced element-wise tolerance of one DCGAN variable (untrained ones must not move)."""
    if name in PRE_BN_BIASES:
        return STEP_PRE_BN_BIAS
    if name.startswith("bn"):
        return (0.0, 0.0)
    return TOLERANCES["step"]


def drift_limits(name):
    """Free-running (max drift, max abs) of one trained variable."""
    return TRAINING["pre_bn_bias" if name in PRE_BN_BIASES else "weights"]
