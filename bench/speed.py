"""Speed benchmark: genmnist vs legacy_v1 step time per precision, FLOP/s, sampling and loop overhead.

    python -m bench.speed --data-dir ../shared/data/mnist [--steps 1] [--repeats 30]

One process, batch 128, the legacy architecture; the legacy preset (parity) and
the default preset in each precision, beside float32 and bfloat16 matmul peaks, and each speed path's
gain: a preset that takes it against the same preset with only that path off.  The machine is
shared and noisy, so every comparison is made inside this run: the variants
are timed in interleaved rounds (the order rotates each round) and ratios
are taken within a round, then the median over rounds is reported.  Writes
bench/results/speed.{json,md}.
"""

import datetime
import io
import math
import os
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from bench.common import command_line, machine, shown_path, timing_parser, write_report
from genmnist import loop, precision
from genmnist.data import batches, load_mnist
from genmnist.defaults import CHECKPOINT_EVERY, LOG_EVERY
from genmnist.models import Z_DIM, build_models
from genmnist.presets import SPEED_PATHS, get_preset
from genmnist.training import GANTrainer

BATCH = 128
RUN_STEPS = get_preset("dcgan", "default").run_steps  # a default run's length
TARGET_RATIO, TARGET_OVERHEAD = 0.9, 0.03
# The default preset's step: float32 and the best precision against legacy_v1, and the best one's use of its peak.
TARGET_FLOAT32_RATIO, TARGET_BEST_RATIO, TARGET_BEST_PEAK = 0.85, 0.5, 0.6
PEAK_DTYPES = {"matmul peak": tf.float32, "matmul peak bfloat16": tf.bfloat16}
LEGACY, DEFAULT = get_preset("dcgan", "legacy"), get_preset("dcgan", "default")
# The variants the speed paths are timed on, each a preset that takes them (genmnist.speedpaths says where
# each applies): 'genmnist' is the legacy preset's training step, 'penalty' the WGAN-GP critic step.  The
# default preset's R1 keeps the reference arithmetic, so ImageConv2D is timed on that preset without R1.
BASES = {"genmnist": LEGACY, "genmnist default --r1 0": DEFAULT.replace(r1_weight=0.0),
         "penalty": DEFAULT.with_loss("wgan-gp")}
STEP_BASES = ("genmnist", "genmnist default --r1 0")  # in the training step table; 'penalty' in its own
PATH_BASES = {"fused_adam": "genmnist", "fused_batch_norm": "genmnist", "joint_d_pass": "genmnist",
              "image_conv": "genmnist default --r1 0", "double_backprop": "penalty"}


def without(preset, path):
    """``preset`` with the speed path ``path`` off and the others as they were."""
    return preset.replace(speed_paths=tuple(p for p in preset.speed_paths if p != path))


def path_label(path):
    """The row that times a run with only ``path`` off (genmnist.speedpaths.PATHS cites it)."""
    return f"{PATH_BASES[path]} without {path}"


def path_variants(base):
    """The presets timed beside the variant ``base`` (a key of BASES), by row: each path timed on it, off."""
    return {path_label(path): without(BASES[base], path) for path in SPEED_PATHS if PATH_BASES[path] == base}


def path_gains(times, cpu_times, base):
    """Each speed path timed on ``base``: the step time of its row over the base's, within each round, then
    the median over rounds (above 1: the path saves time)."""
    gains = {}
    for path in SPEED_PATHS:
        if PATH_BASES[path] == base:
            row, ref, cpu_ref = path_label(path), np.array(times[base]), np.array(cpu_times[base])
            gains[path] = {"row": row, "base": base, "ratio": float(np.median(np.array(times[row]) / ref)),
                           "cpu_ratio": float(np.median(np.array(cpu_times[row]) / cpu_ref))}
    return gains


# --- FLOPs from the layer shapes -------------------------------------------------------------

def layer_macs(model):
    """Multiply-accumulates per example of each Dense/Conv2D/Conv2DTranspose, in order.

    Dense: in*out.  Conv2D: output pixels * kh*kw*cin*cout.  Conv2DTranspose: input
    pixels * kh*kw*cin*cout (every input pixel scatters a full kernel).
    """
    macs = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # a SpectralNormalization wrapper
        if not isinstance(inner, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            continue
        kernel = math.prod(inner.kernel.shape)
        if isinstance(inner, keras.layers.Conv2DTranspose):
            macs.append((layer.name, math.prod(layer.input.shape[1:3]) * kernel))
        elif isinstance(inner, keras.layers.Conv2D):
            macs.append((layer.name, math.prod(layer.output.shape[1:3]) * kernel))
        else:
            macs.append((layer.name, kernel))
    return macs


def iteration_flops(g_macs, d_macs, batch):
    """FLOPs of one D+G iteration, by part (2 FLOPs per MAC).

    A layer's backward pass costs one forward for the weight gradient and one for
    the input gradient; the first layer of a network needs no input gradient
    unless something upstream is differentiated.  Elementwise work (bias, batch
    norm, activations, pooling, losses, Adam) is not counted: it is small beside the matmuls.
    """
    G, D = sum(m for _, m in g_macs), sum(m for _, m in d_macs)
    G_in, D_in = G - g_macs[0][1], D - d_macs[0][1]   # input gradients, first layer skipped
    parts = {
        "G forward": G,
        "D forward on real + fake (D step)": 2 * D,
        "D backward, weights + inputs, real + fake (D step)": 2 * (D + D_in),
        "D forward on fake (G step, updated D)": D,
        "D backward to the image, inputs only (G step)": D,
        "G backward, weights + inputs (G step)": G + G_in,
    }
    parts = {k: 2 * batch * v for k, v in parts.items()}
    return parts, 2 * batch * G   # the legacy graph also recomputes G forward in its G-step run


# --- the timed things -------------------------------------------------------------------------

def matmul_peak(n=2048, chain=2, tries=3, dtype=tf.float32):
    """A dense matmul chain in ``dtype``: what this CPU gives TensorFlow right now, as (wall s, CPU s).

    Best of ``tries`` short calls, because other jobs share the cores: the wall
    peak is the rate reached when they leave room.  The CPU-time rate (FLOPs per
    CPU-second of this process) is the contention-robust measure.
    """
    a = tf.cast(tf.random.normal([n, n]) / math.sqrt(n), dtype)

    @tf.function
    def run(x):
        for _ in range(chain):
            x = tf.matmul(x, a)
        return tf.reduce_sum(x)

    def best():
        wall, cpu = [], []
        for _ in range(tries):
            start, start_cpu = time.perf_counter(), time.process_time()
            run(a).numpy()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        return min(wall), min(cpu)
    run(a).numpy()
    return best, 2.0 * n ** 3 * chain


def legacy_step(model, session, feeds):
    """The legacy_v1 loop's two Session.run calls (D then G train op) on the same feed."""
    state = {"i": 0}

    def step():
        feed = feeds[state["i"] % len(feeds)]
        state["i"] += 1
        session.run(model.d_train, feed)
        session.run(model.g_train, feed)
    return step


def genmnist_step(fn, inputs):
    state = {"i": 0}

    def step():
        metrics = fn(*inputs[state["i"] % len(inputs)])
        state["i"] += 1
        return metrics
    return step


def interleaved(variants, steps, repeats):
    """Wall and CPU seconds per step of each variant per round; the order rotates so drift hits all alike.

    CPU time (all threads of this process) is far less sensitive than wall time
    to other jobs taking the cores, so it is reported next to it.
    """
    names = list(variants)
    for fn in variants.values():  # warm up: tracing, XLA compilation, oneDNN primitive caches
        fn(), fn()
    wall, cpu = {name: [] for name in names}, {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            if name in PEAK_DTYPES:
                w, c = variants[name]()
                wall[name].append(w), cpu[name].append(c)
                continue
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                out = variants[name]()
            if isinstance(out, dict):
                float(out["g_loss"])  # waits for the step's results
            wall[name].append((time.perf_counter() - start) / steps)
            cpu[name].append((time.process_time() - start_cpu) / steps)
        print(f"round {r + 1}/{repeats}: " + ", ".join(f"{n} {wall[n][-1] * 1e3:.0f} ms" for n in names),
              file=sys.stderr, flush=True)
    return wall, cpu


def sampling_rates(generator, repeats=5):
    """Images/s (wall, and per CPU-second) of generator(z, training=False), eager and in a tf.function.

    Eager is how genmnist.sample and the training loop call it.  Each batch size
    gets its own tf.function: one retraced to a relaxed (None) batch dimension
    was slower.
    """
    rates = {}
    for b in (128, 1000):
        z = tf.random.normal([b, 100], seed=1)
        compiled = tf.function(lambda z: generator(z, training=False))
        for mode, fn in (("eager", lambda z: generator(z, training=False)), ("tf.function", compiled)):
            fn(z).numpy()
            wall, cpu = [], []
            for _ in range(repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                fn(z).numpy()
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            rates[f"batch {b}, {mode}"] = {"images_per_s": b / float(np.median(wall)),
                                           "images_per_cpu_s": b / float(np.median(cpu))}
    return rates


def loop_overhead(trainer, data, loop_steps, out_dir):
    """Input wait and the cost of logging, samples and checkpoints, with genmnist.loop's own pieces.

    The steps run on genmnist.loop's stream; the three side tasks are its hooks,
    called one at a time so each can be timed.
    """
    preset, seed = trainer.preset, 0
    strategy = getattr(trainer, "strategy", tf.distribute.get_strategy())
    stream = loop.data_stream(data, preset, seed, BATCH, 0, strategy)
    step = tf.Variable(0, dtype=tf.int64)
    wait, compute = [], []
    for i in range(loop_steps + 2):
        t0 = time.perf_counter()
        real, z = next(stream)
        t1 = time.perf_counter()
        metrics = trainer.train_step(real, z)
        step.assign_add(1)
        t2 = time.perf_counter()
        if i >= 2:  # the first two trace the loop's z shape
            wait.append(t1 - t0)
            compute.append(t2 - t1)
    float(metrics["g_loss"])

    source = iter(batches(data, BATCH, preset.pixel_range, seed + 1))
    next(source)
    start = time.perf_counter()
    for _ in range(20):
        next(source)
    produce = (time.perf_counter() - start) / 20

    run = loop.Run(out_dir, {"preset": preset, "seed": seed, "data_dir": None}, strategy, trainer, step,
                   loop.checkpoint_manager(trainer, step, out_dir), chief=True)
    hooks = loop.make_hooks(run)
    log = loop.MetricsLogger(loop.Progress(RUN_STEPS, 0, out=io.StringIO()), hooks.log)

    def timed(fn, *args):
        start = time.perf_counter()
        fn(*args)
        return time.perf_counter() - start

    def sample(done):
        hooks.samples(done, trainer.inference_generator())

    log(metrics, loop_steps), hooks.checkpoint.save()  # first calls create the event file and trace all_finite
    milestones = [d for d in range(RUN_STEPS + 1) if loop.Schedule(RUN_STEPS).grid_due(d)]
    sample_s = [timed(sample, i) for i in milestones]  # the GIF grows, so time the real sequence
    log_s = float(np.median([timed(log, metrics, loop_steps) for _ in range(20)]))
    ckpt_s = float(np.median([timed(hooks.checkpoint.save) for _ in range(3)]))
    hooks.log.close()

    step_s, wait_s = float(np.mean(compute)), float(np.mean(wait))
    items = {  # name: (seconds per occurrence, occurrences in a default run)
        "input wait, next(stream) in the real loop": (wait_s, RUN_STEPS),
        "log: fetch 4 metrics + NaN check + 5 TensorBoard scalars": (log_s, RUN_STEPS // LOG_EVERY),
        "sample grid: G(64) + PNG + progress.gif + TensorBoard image": (float(np.mean(sample_s)), len(milestones)),
        "checkpoint: finite check + CheckpointManager.save": (ckpt_s, RUN_STEPS // CHECKPOINT_EVERY),
    }  # checkpoints: 19 periodic + the final one
    total = RUN_STEPS * step_s + sum(s * n for s, n in items.values())
    return {"loop_steps": loop_steps, "step_s_in_loop": step_s, "step_s_in_loop_median": float(np.median(compute)),
            "input_wait_s_median": float(np.median(wait)),
            "input_produce_s_per_batch": produce, "input_produce_share_of_step": produce / step_s,
            "sample_s_first_last": [sample_s[0], sample_s[-1]],
            "items": {k: {"seconds": s, "count": n, "share": s * n / total} for k, (s, n) in items.items()},
            "total_overhead_share": sum(s * n for s, n in items.values()) / total}


# --- main -------------------------------------------------------------------------------------

def main(argv=None):
    p = timing_parser(__doc__, "MNIST IDX directory; synthetic uint8 images when it has none")
    p.add_argument("--steps", type=int, default=1, help="iterations per variant per round")
    p.add_argument("--repeats", type=int, default=30, help="interleaved rounds")
    p.add_argument("--loop-steps", type=int, default=30, help="iterations of the real loop for the input share")
    args = p.parse_args(argv)
    started = time.perf_counter()
    info = {"machine": machine(), "command": command_line("bench.speed"),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "batch": BATCH, "steps_per_round": args.steps, "repeats": args.repeats}

    try:
        data, info["data"] = load_mnist(args.data_dir).images, f"MNIST train from {shown_path(args.data_dir)}"
    except Exception as err:  # no data here: the timings do not depend on pixel values
        data = np.random.default_rng(0).integers(0, 256, (60000, 28, 28), dtype=np.uint8)
        info["data"] = f"synthetic uint8 ({type(err).__name__}: {err})"

    keras.utils.set_random_seed(0)
    preset = LEGACY
    generator, discriminator = build_models(preset)
    trainer = GANTrainer(generator, discriminator, preset, seed=0)
    reals = list(batches(data, BATCH, preset.pixel_range, seed=0).take(4))
    inputs = [(real, tf.random.stateless_normal([BATCH, 100], seed=[0, k])) for k, real in enumerate(reals)]
    # The straight port, for scale: the same preset with every speed path off (genmnist.speedpaths); then
    # each path's gain: the variant that takes it with only that path off (PATH_BASES).  Each trainer starts
    # from its own copy of the same initial weights.
    others = {"genmnist, straight port": preset.replace(speed_paths=())}
    for base in STEP_BASES:
        if base != "genmnist":  # that one is `trainer`
            others[base] = BASES[base]
        others.update(path_variants(base))
    trainers = {}
    for name, p in others.items():
        keras.utils.set_random_seed(0)
        trainers[name] = GANTrainer(*build_models(p), p, seed=0)
    xla_step = tf.function(trainer.train_step.python_function, jit_compile=True)

    from legacy_v1.model import GANModel
    legacy = GANModel(learning_rate=preset.learning_rate, beta1=preset.beta1, seed=0)
    feeds = [legacy.feed(real.numpy(), z.numpy()) for real, z in inputs]
    sessions = {"legacy_v1 (parity config)": legacy.session(),  # what legacy_v1.train uses
                "legacy_v1 (default config)": tf.compat.v1.Session(graph=legacy.graph)}  # the TF1 script's
    for session in sessions.values():
        session.run(legacy.init)

    # The default preset (the product's) in each precision, each from the same seeded initial weights.
    default_preset = DEFAULT
    by_precision = {}
    for name in args.precisions:
        keras.utils.set_random_seed(0)
        with precision.policy(name):
            models = build_models(default_preset)
        by_precision[f"genmnist default, {name}"] = GANTrainer(*models, default_preset, seed=0)

    peaks = {name: matmul_peak(dtype=dtype) for name, dtype in PEAK_DTYPES.items()}
    peak_flops = peaks["matmul peak"][1]
    variants = {"genmnist": genmnist_step(trainer.train_step, inputs),
                **{name: genmnist_step(t.train_step, inputs) for name, t in trainers.items()},
                "genmnist XLA": genmnist_step(xla_step, inputs),
                **{name: genmnist_step(t.train_step, inputs) for name, t in by_precision.items()},
                **{name: legacy_step(legacy, s, feeds) for name, s in sessions.items()},
                **{name: fn for name, (fn, _) in peaks.items()}}
    t0 = time.perf_counter()
    trainer.train_step(*inputs[0])
    info["first_call_s"] = {"genmnist": time.perf_counter() - t0}
    t0 = time.perf_counter()
    xla_step(*inputs[0])
    info["first_call_s"]["genmnist XLA"] = time.perf_counter() - t0
    times, cpu_times = interleaved(variants, args.steps, args.repeats)
    finite = {name: bool(np.all(np.isfinite(s.run([legacy.d_loss, legacy.g_loss], feeds[0]))))
              for name, s in sessions.items()}
    for name, t in {"genmnist": trainer, **by_precision}.items():
        finite[name] = all(math.isfinite(float(v)) for v in t.train_step(*inputs[0]).values())
    info["losses_finite_after_timing"] = finite

    g_macs, d_macs = layer_macs(generator), layer_macs(discriminator)
    parts, extra_g = iteration_flops(g_macs, d_macs, BATCH)
    flops = {name: sum(parts.values()) + (extra_g if name in sessions else 0)
             for name in variants if name not in PEAK_DTYPES}
    rows = {}
    legacy_names = list(sessions)
    for name in variants:
        if name in PEAK_DTYPES:
            continue
        # A row is measured against the peak of the dtype its matmuls run in.
        peak_name = "matmul peak bfloat16" if name.endswith("mixed_bfloat16") else "matmul peak"
        peak, peak_cpu = np.array(times[peak_name]), np.array(cpu_times[peak_name])
        t, c = np.array(times[name]), np.array(cpu_times[name])
        rows[name] = {"step_s": float(np.median(t)), "it_per_s": float(1 / np.median(t)),
                      "cpu_s": float(np.median(c)), "rounds_s": t.tolist(), "rounds_cpu_s": c.tolist(),
                      "flops_per_it": flops[name],
                      "gflop_per_s": float(np.median(flops[name] / t) / 1e9),
                      "gflop_per_cpu_s": float(np.median(flops[name] / c) / 1e9),
                      "peak_fraction": float(np.median((flops[name] / t) / (peak_flops / peak))),
                      "peak_fraction_cpu": float(np.median((flops[name] / c) / (peak_flops / peak_cpu))),
                      "peak": peak_name}
        for ref in legacy_names + ["genmnist"]:  # the ratio inside each round, then the median
            rows[name][f"ratio_to {ref}"] = float(np.median(t / np.array(times[ref])))
            rows[name][f"cpu_ratio_to {ref}"] = float(np.median(c / np.array(cpu_times[ref])))
    info["steps"] = rows
    info["speed_paths"] = {path: gain for base in STEP_BASES
                           for path, gain in path_gains(times, cpu_times, base).items()}
    info["matmul_peaks"] = {
        name: {"gflop_per_s": float(np.median(peak_flops / np.array(times[name])) / 1e9), "size": 2048,
               "dtype": PEAK_DTYPES[name].name,
               "rounds_gflop_per_s": (peak_flops / np.array(times[name]) / 1e9).tolist(),
               "gflop_per_cpu_s": float(np.median(peak_flops / np.array(cpu_times[name])) / 1e9)}
        for name in PEAK_DTYPES}
    info["flops"] = {"layer_macs_per_example": {"generator": g_macs, "discriminator": d_macs},
                     "parts_per_iteration": parts, "legacy_extra_generator_forward": extra_g}
    info["sampling_images_per_s"] = sampling_rates(generator)
    with tempfile.TemporaryDirectory() as out_dir:
        info["loop"] = loop_overhead(trainer, data, args.loop_steps, out_dir)
    # One trace for the benchmark's z [b, 100], one for the loop's noise(); more would mean retracing.
    info["train_step_traces"] = trainer.train_step.experimental_get_tracing_count()
    info["penalty_step"] = penalty_step(data, args.repeats)
    info["speed_paths"].update(info["penalty_step"]["speed_paths"])

    ratio = {kind: max(rows["genmnist"][f"{kind}ratio_to {ref}"] for ref in legacy_names) for kind in ("", "cpu_")}
    overhead = info["loop"]["total_overhead_share"]
    info["targets"] = {  # against the faster legacy_v1 configuration
        "genmnist / legacy_v1 step, CPU time": [ratio["cpu_"], TARGET_RATIO, ratio["cpu_"] <= TARGET_RATIO],
        "genmnist / legacy_v1 step, wall time": [ratio[""], TARGET_RATIO, ratio[""] <= TARGET_RATIO],
        "input wait + logging/sampling/checkpoint share": [overhead, TARGET_OVERHEAD, overhead < TARGET_OVERHEAD]}
    info["targets"].update(default_preset_targets(rows, legacy_names))
    info["xla_faster"] = rows["genmnist XLA"]["ratio_to genmnist"] < 1.0
    info["machine"]["load_average_end"] = os.getloadavg()
    info["wall_s"] = time.perf_counter() - started
    write_report(args.results, "speed", info, markdown)
    return 0


def default_preset_targets(rows, legacy_names):
    """The default preset's step targets, wall and CPU ratios against the faster legacy_v1 configuration:
    float32 <= 0.85x, the best precision <= 0.5x and >= 60% of its dtype's matmul peak."""
    targets = {}
    names = [n for n in rows if n.startswith("genmnist default, ")]
    if not names:
        return targets
    best = min(names, key=lambda n: rows[n]["cpu_s"])
    for kind, label in (("cpu_", "CPU time"), ("", "wall time")):
        ratio = {n: max(rows[n][f"{kind}ratio_to {ref}"] for ref in legacy_names) for n in names}
        if "genmnist default, float32" in ratio:
            value = ratio["genmnist default, float32"]
            targets[f"default float32 / legacy_v1 step, {label}"] = [value, TARGET_FLOAT32_RATIO,
                                                                    value <= TARGET_FLOAT32_RATIO]
        targets[f"default best ({best[18:]}) / legacy_v1 step, {label}"] = [ratio[best], TARGET_BEST_RATIO,
                                                                           ratio[best] <= TARGET_BEST_RATIO]
    for kind, label in (("peak_fraction_cpu", "CPU time"), ("peak_fraction", "wall time")):
        value = rows[best][kind]
        targets[f"default best ({best[18:]}) of its matmul peak, {label}"] = [value, TARGET_BEST_PEAK,
                                                                             value >= TARGET_BEST_PEAK]
    return targets


def markdown(info):
    m, loop, legacy_names = info["machine"], info["loop"], [n for n in info["steps"] if n.startswith("legacy")]
    lines = [
        "# Speed benchmark", "",
        f"- command: `{info['command']}`", f"- date: {info['date']}",
        f"- machine: {m['cpu']} "
        f"(bfloat16 native: "
        f"{'yes' if precision.cpu_bfloat16_is_native(m['cpu_flags'], m['cpu_vendor']) else 'no'}), "
        f"shared with other jobs (load average {m['load_average_start'][0]:.1f} at start, "
        f"{m['load_average_end'][0]:.1f} at end)",
        f"- TensorFlow {m['tensorflow']}, Keras {m['keras']}, Python {m['python']}; no GPU",
        f"- data: {info['data']}; batch {info['batch']}, legacy architecture; 'genmnist' is the legacy preset, "
        "'genmnist default, P' the default preset in precision P",
        f"- {info['repeats']} interleaved rounds of {info['steps_per_round']} iteration(s) per variant; "
        "times and ratios are medians over rounds (ratios taken within each round). CPU = process CPU "
        "time (all threads) per iteration: less disturbed by the other jobs than wall time", "",
        "## Training step", "",
        "| variant | wall ms/it | it/s | " + " | ".join(f"wall ratio to {n}" for n in legacy_names)
        + " | CPU ms/it | " + " | ".join(f"CPU ratio to {n}" for n in legacy_names)
        + " | GFLOP/it | GFLOP/s | of matmul peak | GFLOP/CPU-s | of matmul peak (CPU) |",
        "|---" * (9 + 2 * len(legacy_names)) + "|"]
    for name, r in info["steps"].items():
        wall = " | ".join(f"{r['ratio_to ' + n]:.3f}" for n in legacy_names)
        cpu = " | ".join(f"{r['cpu_ratio_to ' + n]:.3f}" for n in legacy_names)
        lines.append(f"| {name} | {r['step_s'] * 1e3:.0f} | {r['it_per_s']:.2f} | {wall} | {r['cpu_s'] * 1e3:.0f} | "
                     f"{cpu} | {r['flops_per_it'] / 1e9:.2f} | {r['gflop_per_s']:.1f} | {r['peak_fraction']:.1%} | "
                     f"{r['gflop_per_cpu_s']:.1f} | {r['peak_fraction_cpu']:.1%} |")
    lines += ["", "genmnist runs TF's fused Adam kernel (ResourceApplyAdam), one D pass over concat(real, fake) "
              "and the fused batch-norm kernel; 'genmnist, straight port' is the same preset with the speed paths off "
              "(`speed_paths=()`, genmnist.speedpaths): Keras' own Adam, two D passes and tf.nn.moments batch "
              "norm, as first ported, and 'genmnist without P' the same preset with only the speed path P off. "
              "All compute the same functions "
              "(tests/test_training.py; `python -m legacy_v1.parity` for the legacy preset). "
              "'genmnist default --r1 0' is the default preset without its R1 penalty, which keeps the reference "
              "arithmetic: without it D computes its float32 gradient to the images as a matmul plus shifted sums "
              "(genmnist.models.ImageConv2D). The default preset's batch norm reads bfloat16 under mixed_bfloat16."]
    lines += ["", "Each row's 'of matmul peak' is against the peak of the dtype its matmuls run in "
              "(bfloat16 for mixed_bfloat16, float32 otherwise; float16 has no native CPU kernels).", ""]
    for name, pk in info["matmul_peaks"].items():
        lines.append(f"- {name} (2048x2048 {pk['dtype']}, best of 3 short calls in each round): "
                     f"{pk['gflop_per_s']:.1f} GFLOP/s median "
                     f"(range {min(pk['rounds_gflop_per_s']):.1f}..{max(pk['rounds_gflop_per_s']):.1f}); "
                     f"{pk['gflop_per_cpu_s']:.1f} GFLOP per CPU-second.")
    lines += ["", f"XLA (`jit_compile=True` on the whole step) is {'faster' if info['xla_faster'] else 'slower'} here "
              f"({info['steps']['genmnist XLA']['ratio_to genmnist']:.2f}x the plain step's time); "
              f"first call (trace, + compile for XLA): genmnist {info['first_call_s']['genmnist']:.1f} s, "
              f"XLA {info['first_call_s']['genmnist XLA']:.1f} s.",
              f"Losses finite after timing: {info['losses_finite_after_timing']}. `train_step` traces: "
              f"{info['train_step_traces']} (one per z shape used here: no retracing).", "",
              "FLOPs per iteration (2 per multiply-accumulate, from the layer shapes; "
              "elementwise work not counted):", ""]
    for part, value in info["flops"]["parts_per_iteration"].items():
        lines.append(f"- {part}: {value / 1e9:.2f} GFLOP")
    lines += [f"- legacy_v1 only: its G-step `Session.run` recomputes G forward: "
              f"+{info['flops']['legacy_extra_generator_forward'] / 1e9:.2f} GFLOP", ""]
    lines += speed_paths_markdown(info["speed_paths"])
    lines += ["## Sampling (generator forward, training=False)", "",
              "| case | images/s | images per CPU-second |", "|---|---|---|"]
    lines += [f"| {k} | {v['images_per_s']:,.0f} | {v['images_per_cpu_s']:,.0f} |"
              for k, v in info["sampling_images_per_s"].items()]
    lines += ["", f"## Loop overhead at the default cadence ({RUN_STEPS} steps)", "",
              "| item | seconds each | count | share of training time |", "|---|---|---|---|"]
    for name, item in loop["items"].items():
        lines.append(f"| {name} | {item['seconds']:.4f} | {item['count']} | {item['share']:.2%} |")
    lines += [f"| **total** | | | **{loop['total_overhead_share']:.2%}** |", "",
              f"Step time inside the real loop: {loop['step_s_in_loop'] * 1e3:.0f} ms mean over "
              f"{loop['loop_steps']} steps. Sample grids cost {loop['sample_s_first_last'][0] * 1e3:.0f} ms "
              f"(first) to {loop['sample_s_first_last'][1] * 1e3:.0f} ms (last, longest GIF). Producing one batch "
              f"with the tf.data pipeline alone costs {loop['input_produce_s_per_batch'] * 1e3:.2f} ms "
              f"({loop['input_produce_share_of_step']:.2%} of a step), work that prefetch overlaps with the step.", "",
              "## Targets", "", "Step ratios are against the faster legacy_v1 configuration. On a shared machine the "
              "CPU-time ratio is the reliable one: the wall ratio swings with the other jobs' load.", "",
              "| target | measured | limit | met |", "|---|---|---|---|"]
    for name, (value, limit, met) in info["targets"].items():
        lines.append(f"| {name} | {value:.3f} | {limit} | {'yes' if met else 'no'} |")
    lines += [""] + penalty_step_markdown(info["penalty_step"])
    lines += [f"Total benchmark wall time {info['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


# --- the WGAN-GP critic step ------------------------------------------------------------------

TARGET_PENALTY_RATIO = 2.5


def penalty_step(data, repeats):
    """A DCGAN critic step with the gradient penalty against the same step without it (batch 128).

    One critic step as the trainer's ``discriminator_step`` runs it (G forward on the noise, then D's
    update) from the same initial weights, timed in interleaved rounds: without the penalty, with it as
    genmnist computes it, with only the double backprop off (the plain nested-tape penalty,
    losses.gradient_penalty: the cost before the masks were cut), and with every speed path off (that
    penalty and Keras' own Adam).
    """
    preset = BASES["penalty"]
    presets = {"no penalty": preset.replace(gp_weight=0.0), "penalty": preset, **path_variants("penalty"),
               "penalty, straight port": preset.replace(speed_paths=())}
    trainers = {}
    for name, p in presets.items():
        keras.utils.set_random_seed(0)
        trainers[name] = GANTrainer(*build_models(p), p, seed=0)
    reals = list(batches(data, BATCH, preset.pixel_range, seed=0).take(2))
    zs = [tf.random.stateless_normal([BATCH, Z_DIM], [1, k]) for k in range(2)]
    us = [tf.random.stateless_uniform([preset.n_critic, BATCH, 1, 1, 1], [2, k]) for k in range(2)]

    def critic_step(trainer):
        state = {"i": 0}

        def step():
            k = state["i"] % 2
            state["i"] += 1
            return float(trainer.discriminator_step(reals[k], zs[k], us[k])["d_loss"])
        return step
    times, cpu_times = interleaved({name: critic_step(t) for name, t in trainers.items()}, 1, repeats)
    base, base_cpu = np.array(times["no penalty"]), np.array(cpu_times["no penalty"])
    rows = {name: {"step_s": float(np.median(times[name])), "cpu_s": float(np.median(cpu_times[name])),
                   "ratio": float(np.median(np.array(times[name]) / base)),
                   "cpu_ratio": float(np.median(np.array(cpu_times[name]) / base_cpu))} for name in trainers}
    return {"rows": rows, "target": TARGET_PENALTY_RATIO, "met": rows["penalty"]["cpu_ratio"] <= TARGET_PENALTY_RATIO,
            "speed_paths": path_gains(times, cpu_times, "penalty")}


def speed_paths_markdown(gains):
    """Each speed path's gain: the table genmnist.speedpaths.PATHS points into."""
    lines = ["## Speed paths", "",
             "Each speed path (genmnist.speedpaths) timed on a variant that takes it: that variant's step with "
             "only the path off, over the same step with it, taken within each round (above 1: the path saves "
             "that share of the step). The rows are in the tables above and below.", "",
             "| speed path | row | timed on | wall ratio | CPU ratio |", "|---|---|---|---|---|"]
    lines += [f"| {path} | {g['row']} | {g['base']} | {g['ratio']:.3f} | {g['cpu_ratio']:.3f} |"
              for path, g in gains.items()]
    return lines + [""]


def penalty_step_markdown(result):
    lines = ["## WGAN-GP critic step", "",
             "DCGAN critic, batch 128, one critic step (G forward, then D forward, backward, Adam); ratios to "
             "the same step without the penalty, taken within each round. 'without double_backprop' computes "
             "the penalty with the plain formula (losses.gradient_penalty), which also backpropagates zeros "
             "through D's forward pass; 'straight port' has every speed path off (genmnist.speedpaths): that "
             "formula and Keras' own Adam.", "",
             "| critic step | wall ms | CPU ms | wall ratio | CPU ratio |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['step_s'] * 1e3:.0f} | {r['cpu_s'] * 1e3:.0f} | {r['ratio']:.2f} | "
              f"{r['cpu_ratio']:.2f} |" for name, r in result["rows"].items()]
    lines += ["", f"Target: with the penalty at most {result['target']}x without it (CPU time): "
              f"{'met' if result['met'] else 'not met'}.", ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
