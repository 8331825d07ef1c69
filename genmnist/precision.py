"""The numeric precision a run trains in: float32, or a Keras mixed policy (16-bit compute, float32 state).

Under ``mixed_bfloat16``/``mixed_float16`` the convolutions and matmuls run in
16 bits while every variable, optimizer slot, batch-norm statistic, loss and the
gradient penalty stay float32: the policy makes variables float32, batch norm's
fused kernel reads and writes 16 bits but computes in float32 (no float32 copy of
its input and output), and ``genmnist.models`` keeps each network's output layer
in float32 (so D's scores reach the losses, and G's images reach sampling, as float32).
float16's narrow exponent needs loss scaling; bfloat16 has float32's range and
does not.  The legacy presets stay float32: their parity checks compare with the
float32 legacy graph.
"""

import contextlib
import os

from genmnist.errors import UserError

# The names are read by the command lines' --help, so this module imports TensorFlow and Keras
# only inside the functions that use them.

FLOAT32 = "float32"  # the reference arithmetic: the precision wherever no mixed one applies
PRECISIONS = (FLOAT32, "mixed_bfloat16", "mixed_float16")
AUTO = "auto"
DEFAULT = AUTO
# The CPU flags under which bfloat16 trains faster than float32, by vendor (docs/results.md, "Mixed precision"):
# Intel's AMX, and AMD's AVX512-BF16.  An Intel Xeon that showed AVX512-BF16 without AMX trained slower
# in bfloat16 than in float32, so that flag alone does not count on Intel.
NATIVE_BF16_CPU_FLAGS = {"GenuineIntel": ("amx_bf16",), "AuthenticAMD": ("avx512_bf16",)}
REPORTED_CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx512f", "avx2", "fma")


def _cpuinfo_field(name, cpuinfo="/proc/cpuinfo"):
    """The first value of ``name`` in /proc/cpuinfo ('' where the file or the field is missing)."""
    if not os.path.exists(cpuinfo):
        return ""
    with open(cpuinfo) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return ""


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (``lscpu``'s Flags line) as a set; empty where /proc/cpuinfo is missing."""
    return set(_cpuinfo_field("flags", cpuinfo).split())


def cpu_vendor(cpuinfo="/proc/cpuinfo"):
    """/proc/cpuinfo's vendor_id: 'GenuineIntel', 'AuthenticAMD', ... ('' where it is missing)."""
    return _cpuinfo_field("vendor_id", cpuinfo)


def cpu_bfloat16_is_native(flags, vendor):
    """Whether a CPU with these flags from this vendor computes bfloat16 faster than float32."""
    return bool(set(flags) & set(NATIVE_BF16_CPU_FLAGS.get(vendor, ())))


def cpu_description(cpuinfo="/proc/cpuinfo"):
    """'MODEL, N cores, flags F G': the machine line a results file or a record names (the flags that
    decide the speed paths: bfloat16, AVX-512, AVX2)."""
    flags = sorted(cpu_flags(cpuinfo) & set(REPORTED_CPU_FLAGS))
    return (f"{_cpuinfo_field('model name', cpuinfo) or 'unknown CPU'}, {len(os.sched_getaffinity(0))} cores, "
            f"flags {' '.join(flags) or 'none of ' + ' '.join(REPORTED_CPU_FLAGS)}")


def bfloat16_is_native():
    """True when this machine computes bfloat16 faster than float32: a GPU of compute capability >= 8.0, or
    a CPU that :func:`cpu_bfloat16_is_native` names, with TensorFlow's oneDNN kernels on.  Elsewhere
    bfloat16 is emulated or otherwise slower than float32."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return tuple(capability) >= (8, 0)
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":  # bfloat16 then runs in Eigen's emulation,
        return False                                     # slower than float32 even on an AMX CPU
    return cpu_bfloat16_is_native(cpu_flags(), cpu_vendor())


def resolve(name, preset):
    """The concrete precision a run of ``preset`` trains in for ``--precision name``.

    ``auto``: mixed_bfloat16 where bfloat16 is native, for a non-legacy preset (its samples score
    as in float32 within the seed-to-seed spread, the R1 default's included: docs/results.md,
    "Mixed precision"), else float32.  A mixed precision with a legacy preset is a user error.
    """
    legacy = preset.name == "legacy"  # its parity checks compare with the float32 legacy graph
    if name == AUTO:
        return FLOAT32 if legacy or not bfloat16_is_native() else "mixed_bfloat16"
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS + (AUTO,))}")
    if name != FLOAT32 and legacy:
        raise UserError(f"--precision {name} needs a non-legacy preset: the legacy preset reproduces the "
                        "float32 legacy graph (its parity checks); use --preset default or --precision float32")
    return name


@contextlib.contextmanager
def policy(name):
    """Build layers under the Keras dtype policy ``name``; the global policy is restored on exit.

    A layer keeps the policy it was created with (and clones keep it), so only
    model construction needs to run inside.
    """
    import keras
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def of(model):
    """The precision ``model`` was built in (its dtype policy's name)."""
    return model.dtype_policy.name


def float32_clone(model):
    """A float32 copy of ``model``'s architecture (new, unset weights): what sampling runs in, whatever
    precision trained the model, so grids, evaluations and exports match ``genmnist.sample``'s float32."""
    import keras

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})
    with policy("float32"):
        return keras.models.clone_model(model, clone_function=clone)


def with_loss_scaling(optimizer, precision):
    """``optimizer`` wrapped in Keras' dynamic loss scaling where ``precision`` computes in float16."""
    import keras
    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
