"""The speed paths: each computes a function of the plain port in fewer or faster ops, each behind its own switch.

``Preset.speed_paths`` names the paths a run takes (all of them by default, by the names in
``presets.SPEED_PATHS``, which are this module's deciding functions); a path left out computes as the
straight port did, and none at all is ``bench.speed``'s "genmnist, straight port" row.  Every decision to
take one is made here, so the code that builds or runs a path asks this module instead of deciding on its
own.  :data:`PATHS` lists them with what each replaces, the test that holds it to the plain formula and the
bench/results row that times a run without it; the gains are in that file, never restated here.
"""

import dataclasses

import tensorflow as tf

from genmnist import distribute, losses


@dataclasses.dataclass(frozen=True)
class SpeedPath:
    key: str        # its name in Preset.speed_paths, and the function here that decides it
    name: str
    replaces: str   # the plain formula it computes
    applies: str    # where it is taken when the preset names it
    test: str       # the test against the plain formula
    measured: str   # the bench/results row that times a run with only this path off


SPEED = "bench/results/speed.md"


def _row(label):
    """Where bench.speed times a path: its row in :data:`SPEED` (``bench.speed.path_label`` writes it)."""
    return f'{SPEED} ("{label}" row)'


PATHS = (
    SpeedPath("fused_adam", "genmnist.training.FusedAdam",
              "keras.optimizers.Adam's elementwise update with TF's fused ResourceApplyAdam kernel, one op "
              "per variable", "every run",
              "tests/test_training.py::test_fused_adam_follows_keras_adam", _row("genmnist without fused_adam")),
    SpeedPath("fused_batch_norm", "fused batch norm (genmnist.models.BatchNorm.normalize_fused)",
              "tf.nn.moments and tf.nn.batch_normalization with TF's fused batch-norm kernel",
              "training-mode (and batch-statistics) normalisation on a single replica: synchronised "
              "statistics over replicas need tf.nn.moments's sums",
              "tests/test_training.py::test_fused_batch_norm_matches_moments",
              _row("genmnist without fused_batch_norm")),
    SpeedPath("joint_d_pass", "joint D pass (genmnist.training.GANTrainer.joint_d_pass)",
              "two D passes, on the real and on the fake batch, with one pass over both",
              "the sigmoid losses only: a critic loss is a difference of means whose gradient cancels "
              "exactly for some critic parameters, and one joint reduction leaves rounding noise there "
              "that Adam turns into lr-sized steps",
              "tests/test_training.py::test_joint_discriminator_pass_gives_the_separate_passes_result",
              _row("genmnist without joint_d_pass")),
    SpeedPath("image_conv", "genmnist.models.ImageConv2D",
              "D's first Conv2D's float32 gradient to the images (oneDNN's slow single-channel "
              "backward-data kernel) with a matmul and shifted sums",
              "the dcgan discriminator, on CPUs, for presets that need not keep the reference arithmetic "
              "(it sums in another order); a GPU keeps cuDNN's kernel",
              "tests/test_models.py::test_image_conv_is_the_plain_conv_with_the_image_gradient_summed_in_"
              "another_order", _row("genmnist default --r1 0 without image_conv")),
    SpeedPath("double_backprop", "genmnist.double_backprop",
              "the nested-tape gradient penalty (WGAN-GP, R1), whose weight gradient also backpropagates "
              "zeros through D's forward pass, with one that cuts those zeros",
              "the dcgan discriminator, where it is bit for bit; on the legacy WGAN critic it differs in the "
              "last bits, which the legacy WGAN-GP parity rejects",
              "tests/test_double_backprop.py", _row("penalty without double_backprop")),
)


def fused_adam(preset):
    """Whether the optimizers are :class:`genmnist.training.FusedAdam` (else ``keras.optimizers.Adam``)."""
    return "fused_adam" in preset.speed_paths


def fused_batch_norm(preset):
    """Whether G's BatchNorm layers may take the fused kernel; :func:`fused_batch_norm_here` decides per call."""
    return "fused_batch_norm" in preset.speed_paths


def fused_batch_norm_here():
    """Whether a BatchNorm allowed the fused kernel takes it in the current context: on a single replica only
    (the kernel normalises one replica's slice, where synchronised batch norm needs the global batch)."""
    return distribute.single_replica()


def joint_d_pass(preset):
    """Whether a D update scores concat(real, fake) in one pass: the sigmoid losses only."""
    return "joint_d_pass" in preset.speed_paths and losses.get(preset.loss).sigmoid


def image_conv(preset):
    """Whether the DCGAN discriminator's first layer is an :class:`genmnist.models.ImageConv2D`: a CPU trick
    for runs that need not keep the reference arithmetic; where TensorFlow sees a GPU, cuDNN's kernel stays."""
    return ("image_conv" in preset.speed_paths and preset.model == "dcgan" and not preset.keeps_reference_arithmetic
            and not tf.config.list_physical_devices("GPU"))


def double_backprop(preset):
    """Whether the gradient penalties take :mod:`genmnist.double_backprop` (else the plain formulas in
    :mod:`genmnist.losses`): for the DCGAN discriminator only."""
    return "double_backprop" in preset.speed_paths and preset.model == "dcgan"
