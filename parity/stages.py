"""The parity stages, each returning table rows: variables, forward passes, losses and gradients of one
batch, then legacy training iterations teacher-forced ("step") or free-running ("training")."""

import dataclasses

import numpy as np
import tensorflow as tf

from genmnist import losses
from parity.rows import Row, compare, compare_drift, keep_worst
from parity.tolerances import TOLERANCES, WGAN_GRADIENTS, drift_limits


def names_and_shapes(stage, pair):
    """One row: v1 and v2 have the same variable names with the same shapes."""
    v1_shapes = {n: tuple(v.shape) for n, v in pair.v1_vars.items()}
    v2_shapes = {n: tuple(v.shape) for n, v in pair.table.items()}
    bad = set(v1_shapes) ^ set(v2_shapes) | {n for n in set(v1_shapes) & set(v2_shapes)
                                             if v1_shapes[n] != v2_shapes[n]}
    return Row(stage, f"names+shapes ({len(v1_shapes)} v1, {len(v2_shapes)} v2)", float(len(bad)), 0.0, 0, 0,
               not bad)


def stage_variables(pair):
    """Names, shapes, the optimizer split agree; initial values copied exactly (the DCGAN pair)."""
    rows = [names_and_shapes("variables", pair)]
    by_id = {id(v): n for n, v in pair.table.items()}
    for side, v1_list, v2_list in (("D", pair.v1.d_vars, pair.trainer.d_variables),
                                   ("G", pair.v1.g_vars, pair.trainer.g_variables)):
        names1 = sorted(v.name[:-2] for v in v1_list)
        names2 = sorted(by_id.get(id(v), v.name) for v in v2_list)
        mismatch = set(names1) ^ set(names2)
        rows.append(Row("variables", f"{side} optimizer set ({len(names1)} v1, {len(names2)} v2)",
                        float(len(mismatch)), 0.0, 0, 0, not mismatch and len(names1) == len(names2)))
    v1_values, v2_values = pair.v1_values(), pair.v2_values()
    worst = max((compare("variables", n, v1_values[n], v2_values[n]) for n in v1_values),
                key=lambda r: (not r.ok, r.max_abs))
    rows.append(dataclasses.replace(worst, quantity="initial values after copy (worst)"))
    return rows


def v1_gradients(pair):
    """v1's tensors d loss / d variable for both losses and every trainable variable, by name."""
    names = [n for n, v in pair.v1_vars.items() if v.trainable]
    with pair.v1.graph.as_default():
        return {loss: dict(zip(names, tf.gradients(getattr(pair.v1, loss), [pair.v1_vars[n] for n in names])))
                for loss in ("d_loss", "g_loss")}


def gradient_rows(pair, tape, v2_losses, v1_grads, tolerance=None):
    """Rows of d loss / d variable, v1's values against v2's taken from ``tape`` for ``v2_losses``."""
    rows = []
    for loss_name, loss in v2_losses.items():
        names = list(v1_grads[loss_name])
        grads = tape.gradient(loss, [pair.table[n] for n in names])
        for name, grad in zip(names, grads):
            grad = np.zeros(pair.table[name].shape, np.float32) if grad is None else grad  # a variable the loss ignores
            rows.append(compare("gradients", f"{pair.prefix}d {loss_name}/d {name}", v1_grads[loss_name][name],
                                grad, tolerance))
    return rows


def stage_forward_losses_gradients(pair, real, z):
    """Forward passes, both losses and their gradients on one batch (the DCGAN pair)."""
    v1 = pair.v1
    outs = pair.sess.run({"G(z)": v1.Gz, "D(real) prob": v1.D_real, "D(real) logit": v1.D_real_logits,
                          "D(fake) prob": v1.D_fake, "D(fake) logit": v1.D_fake_logits,
                          "d_loss": v1.d_loss, "g_loss": v1.g_loss, "grads": v1_gradients(pair)}, v1.feed(real, z))
    with tf.GradientTape(persistent=True) as tape:
        fake = pair.generator(z, training=True)
        real_logits = pair.discriminator(real.reshape(-1, 28, 28, 1), training=True)
        fake_logits = pair.discriminator(fake, training=True)
        d_loss, g_loss = losses.get("legacy")(real_logits, fake_logits)
    v2 = {"G(z)": fake, "D(real) prob": tf.sigmoid(real_logits), "D(real) logit": real_logits,
          "D(fake) prob": tf.sigmoid(fake_logits), "D(fake) logit": fake_logits}
    rows = [compare("forward", k, outs[k], v2[k]) for k in v2]
    rows += [compare("losses", "d_loss", outs["d_loss"], d_loss), compare("losses", "g_loss", outs["g_loss"], g_loss)]
    return rows + gradient_rows(pair, tape, {"d_loss": d_loss, "g_loss": g_loss}, outs["grads"])


def wgan_stages_1_to_3(pair, real, z, u):
    """Variables, forward passes and losses (penalty included), gradients of both losses (the WGAN-GP pair)."""
    rows = [names_and_shapes("wgan-vars", pair)]
    if not rows[0].ok:
        return rows
    v1, critic, preset = pair.v1, pair.discriminator, pair.preset
    with v1.graph.as_default():
        d_real, d_fake = v1.discriminator(v1.X, reuse=True), v1.discriminator(v1.Gz, reuse=True)
    outs = pair.sess.run({"G(z)": v1.Gz, "D(real)": d_real, "D(fake)": d_fake, "gradient penalty": v1.gradient_penalty,
                          "d_loss": v1.d_loss, "g_loss": v1.g_loss, "grads": v1_gradients(pair)},
                         {v1.X: real, v1.Z: z, v1.U: u})
    pair.copy_v1_to_v2()
    with tf.GradientTape(persistent=True) as tape:
        fake = pair.generator(z, training=True)
        real_scores, fake_scores = critic(real, training=True), critic(fake, training=True)
        penalty = losses.gradient_penalty(critic, real, fake, u, [1])
        d_loss, g_loss = losses.get(preset.loss)(real_scores, fake_scores)
        d_loss = d_loss + preset.gp_weight * penalty
    v2 = {"G(z)": fake, "D(real)": real_scores, "D(fake)": fake_scores}
    rows += [compare("forward", f"wgan {k}", outs[k], v2[k]) for k in v2]
    rows += [compare("losses", f"wgan {k}", outs[k], v) for k, v in
             (("gradient penalty", penalty), ("d_loss", d_loss), ("g_loss", g_loss))]
    return rows + gradient_rows(pair, tape, {"d_loss": d_loss, "g_loss": g_loss}, outs["grads"], WGAN_GRADIENTS)


def stage_training(pair, iterations, forced=False):
    """Run ``pair.iterate(*args)`` for each ``args`` of ``iterations`` on both sides; per variable and per
    loss the worst row over all iterations.

    Free-running (stage "training"): each side trains on its own; trained variables are judged by
    their drift (:func:`parity.rows.compare_drift`), untrained ones must stay bit-identical.
    Teacher-forced (``forced``, stage "step"): before every iteration v2's weights and Adam moments
    are reset to v1's, so each row measures one iteration's arithmetic, not the accumulated chaos.
    """
    stage = "step" if forced else "training"
    slots = pair.slot_pairs() if forced else None
    loss_tolerance = pair.step_loss_tolerance if forced else TOLERANCES["training"]
    initial = pair.v1_values()
    worst = {}
    for args in iterations:
        if forced:
            pair.sync_v2_from_v1(slots)
        for quantity, v1_loss, v2_loss in pair.iterate(*args):
            keep_worst(worst, compare(stage, pair.prefix + quantity, v1_loss, v2_loss, loss_tolerance))
        v2_values = pair.v2_values()
        for name, a in pair.v1_values().items():
            quantity = pair.prefix + name
            if forced:
                row = pair.step_row(stage, name, a, v2_values[name])
            elif name in pair.trained:
                row = compare_drift(stage, quantity, a, v2_values[name], initial[name], drift_limits(name))
            else:
                row = compare(stage, quantity, a, v2_values[name], (0.0, 0.0))
            keep_worst(worst, row)
    return list(worst.values())
