"""Run by test_train_cli: one device vs MirroredStrategy over 2 logical CPUs, same global batch.

Must be its own process: logical devices can only be configured before TF starts.
Prints one JSON line per case (the DCGAN default preset with R1 on the whole batch; WGAN weight clipping; WGAN-GP in
both penalty forms) with the largest differences in the reported losses and in the first
update of every variable. The critic cases take 2 critic steps, not their presets' 5: a step
is unrolled into the traced function, and 2 already carry clipping, the penalty's per-replica
slices and D's batch-norm sync from one critic step into the next.
"""

import json
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, sys.argv[1])
from genmnist.models import build_models  # noqa: E402
from genmnist.presets import get_preset  # noqa: E402
from genmnist.training import GANTrainer  # noqa: E402

CRITIC_STEPS = 2
CASES = {
    # R1 on the whole batch: with a share of it, each replica takes the first share of its own slice, a subset
    # of the same size as one device's first share but not the same one (docs/distributed.md).
    "dcgan default": get_preset("dcgan", "default").replace(penalty_fraction=1.0),
    "dcgan wgan clip": get_preset("dcgan", "default").with_loss("wgan").replace(n_critic=CRITIC_STEPS),
    "wgan-gp": get_preset("wgan", "default").replace(n_critic=CRITIC_STEPS),
    "legacy wgan-gp": get_preset("wgan", "legacy").replace(n_critic=CRITIC_STEPS),
}


def run(strategy, preset):
    low, high = preset.pixel_range
    real = tf.random.stateless_uniform([16, 28, 28, 1], [1, 2], low, high)
    z = tf.random.stateless_normal([16, preset.n_critic, 100], [3, 4])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        generator, discriminator = build_models(preset)
    trainer = GANTrainer(generator, discriminator, preset, seed=5, strategy=strategy)
    before = [v.numpy().copy() for v in generator.variables + discriminator.variables]
    data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((real, z)))
    metrics = trainer.train_step(*next(iter(data)))
    after = [v.numpy() for v in generator.variables + discriminator.variables]
    largest_d_weight = max(float(abs(v.numpy()).max()) for v in discriminator.trainable_variables)
    return {k: float(v) for k, v in metrics.items()}, [a - b for a, b in zip(after, before)], largest_d_weight


mirrored = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
for case, preset in CASES.items():
    single_metrics, single_updates, _ = run(tf.distribute.get_strategy(), preset)
    mirrored_metrics, mirrored_updates, largest = run(mirrored, preset)
    print(json.dumps({
        "case": case, "replicas": mirrored.num_replicas_in_sync, "clip": preset.clip,
        "metric_rel_diff": max(abs(single_metrics[k] - mirrored_metrics[k]) / max(abs(single_metrics[k]), 1e-6)
                               for k in single_metrics),
        "update_abs_diff": max(float(abs(a - b).max()) for a, b in zip(single_updates, mirrored_updates)),
        "update_max": max(float(abs(a).max()) for a in single_updates),
        "update_rel_l2": float(np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(single_updates, mirrored_updates))
                                       / sum((a ** 2).sum() for a in single_updates))),
        "metric_abs_diff": max(abs(single_metrics[k] - mirrored_metrics[k]) for k in single_metrics),
        "mirrored_largest_d_weight": largest,
    }), flush=True)
