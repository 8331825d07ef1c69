"""tf.distribute helpers for ``--strategy`` and ``--logical-cpus``."""

import tensorflow as tf

# What a collective op raises when a peer worker died or stopped answering.
WORKER_LOST = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError)


def make_strategy(name):
    """'default' (one device), 'mirrored' (this machine's GPUs, else its logical CPUs) or 'multiworker' (TF_CONFIG)."""
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def single_replica():
    """Whether the current replica context (if any) is the only replica: no cross-replica sums needed."""
    context = tf.distribute.get_replica_context()
    return context is None or context.num_replicas_in_sync == 1


def is_chief(strategy):
    """Only one process writes samples, logs and the kept checkpoint (task 0 of a multi-worker job)."""
    return chief_of(getattr(strategy, "cluster_resolver", None))


def chief_of(resolver):
    """``is_chief`` for a cluster resolver (None: no cluster), e.g. one read from TF_CONFIG before TF starts."""
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


def split_cpu(count):
    """Expose the CPU as ``count`` logical devices; must run before TensorFlow starts."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
