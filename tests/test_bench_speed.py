"""bench/speed.py: the FLOP count from layer shapes matches a hand count, and the report renders."""

from bench import common, speed
from genmnist.models import build_discriminator, build_generator

# Per example, by hand from the legacy shapes (docs/legacy.md): dense in*out, conv out_pixels*k*k*cin*cout,
# transposed conv in_pixels*k*k*cin*cout.
G_MACS = [100 * 1024, 1024 * 3136, 7 * 7 * 25 * 64 * 32, 14 * 14 * 25 * 32 * 16, 28 * 28 * 16]
D_MACS = [28 * 28 * 25 * 32, 14 * 14 * 25 * 32 * 64, 3136 * 1024, 1024]


def test_layer_macs_match_the_hand_count():
    assert [m for _, m in speed.layer_macs(build_generator())] == G_MACS
    assert [m for _, m in speed.layer_macs(build_discriminator())] == D_MACS


def test_iteration_flops_counts_each_pass_once():
    g, d = [("g", m) for m in G_MACS], [("d", m) for m in D_MACS]
    parts, extra = speed.iteration_flops(g, d, batch=2)
    G, D = sum(G_MACS), sum(D_MACS)
    # G fwd + 2 D fwd + 2 D bwd (weights + inputs but d_1's) + D fwd + D input-bwd + G bwd (weights + inputs but g_1's)
    expected = G + 2 * D + 2 * (2 * D - D_MACS[0]) + D + D + (2 * G - G_MACS[0])
    assert sum(parts.values()) == 2 * 2 * expected
    assert extra == 2 * 2 * G


def _fake_info():
    row = {"step_s": 0.5, "it_per_s": 2.0, "cpu_s": 0.4, "flops_per_it": 3e10, "gflop_per_s": 60.0,
           "peak_fraction": 0.5, "gflop_per_cpu_s": 80.0, "peak_fraction_cpu": 0.6}
    names = ["genmnist", "genmnist XLA", "legacy_v1 (parity config)", "legacy_v1 (default config)",
             *(speed.path_label(path) for path in speed.SPEED_PATHS if speed.PATH_BASES[path] != "penalty")]
    for key in ("ratio_to", "cpu_ratio_to"):
        row.update({f"{key} {n}": 1.0 for n in names})
    items = {"input wait": {"seconds": 0.001, "count": 10000, "share": 0.001}}
    return {
        "machine": {**common.machine(), "cpu_flags": ["amx_bf16", "avx512f"], "cpu_vendor": "GenuineIntel",
                    "load_average_end": (1.0, 1.0, 1.0)},
        "command": "python -m bench.speed", "date": "today", "data": "synthetic", "batch": 128,
        "steps_per_round": 1, "repeats": 1, "steps": {n: dict(row) for n in names},
        "matmul_peaks": {name: {"gflop_per_s": 100.0, "rounds_gflop_per_s": [100.0], "gflop_per_cpu_s": 120.0,
                                "dtype": dtype} for name, dtype in (("matmul peak", "float32"),
                                                                    ("matmul peak bfloat16", "bfloat16"))},
        "xla_faster": False, "first_call_s": {"genmnist": 1.0, "genmnist XLA": 2.0},
        "losses_finite_after_timing": {}, "train_step_traces": 2,
        "flops": {"parts_per_iteration": {"G forward": 1e9}, "legacy_extra_generator_forward": 1e9},
        "sampling_images_per_s": {"batch 128, eager": {"images_per_s": 1000.0, "images_per_cpu_s": 900.0}},
        "loop": {"items": items, "total_overhead_share": 0.001, "step_s_in_loop": 0.5, "loop_steps": 3,
                 "sample_s_first_last": [0.1, 0.2], "input_produce_s_per_batch": 0.001,
                 "input_produce_share_of_step": 0.002},
        "targets": {"ratio": [0.8, 0.9, True]}, "wall_s": 10.0,
        "penalty_step": {"rows": {n: {"step_s": 0.2, "cpu_s": 0.2, "ratio": 1.5, "cpu_ratio": 1.7}
                                  for n in ("no penalty", "penalty", speed.path_label("double_backprop"))},
                         "target": 2.5, "met": True},
        "speed_paths": {path: {"row": speed.path_label(path), "base": speed.PATH_BASES[path], "ratio": 1.1,
                               "cpu_ratio": 1.2} for path in speed.SPEED_PATHS}}


def test_markdown_report_renders_every_section():
    text = speed.markdown(_fake_info())
    for heading in ("## Training step", "## Speed paths", "## Sampling", "## Loop overhead", "## Targets",
                    "## WGAN-GP critic step"):
        assert heading in text
    assert "| genmnist XLA |" in text
    for path in speed.SPEED_PATHS:  # the rows genmnist.speedpaths.PATHS points to
        assert f"| {speed.path_label(path)} |" in text.split("## Speed paths")[0 if path != "double_backprop" else 1]
        assert f"| {path} | {speed.path_label(path)} | {speed.PATH_BASES[path]} | 1.100 | 1.200 |" in text
    assert "(bfloat16 native: yes)" in text  # from the flags the record keeps
    assert "matmul peak bfloat16 (2048x2048 bfloat16" in text
    table = [line for line in text.splitlines() if line.startswith("| variant")][0]
    separator = text.splitlines()[text.splitlines().index(table) + 1]
    assert table.count("|") == separator.count("|")


def test_path_gains_are_each_rows_time_over_its_bases_within_each_round():
    rows = [speed.path_label(p) for p in speed.SPEED_PATHS if speed.PATH_BASES[p] == "genmnist"]
    times = {"genmnist": [1.0, 2.0, 4.0], **dict.fromkeys(rows, [1.5, 2.0, 4.4])}
    cpu = {"genmnist": [1.0, 1.0, 1.0], **dict.fromkeys(rows, [1.0, 3.0, 2.0])}
    gains = speed.path_gains(times, cpu, "genmnist")
    assert [g["row"] for g in gains.values()] == rows
    assert gains["fused_adam"] == {"row": "genmnist without fused_adam", "base": "genmnist", "ratio": 1.1,
                                   "cpu_ratio": 2.0}


def test_each_variant_is_its_base_with_only_its_path_off():
    labels = []
    for base, preset in speed.BASES.items():
        for label, variant in speed.path_variants(base).items():
            labels.append(label)
            assert set(preset.speed_paths) - set(variant.speed_paths) == {label.removeprefix(base + " without ")}
            assert variant.replace(speed_paths=preset.speed_paths) == preset
    assert sorted(labels) == sorted(speed.path_label(p) for p in speed.SPEED_PATHS)


def test_default_preset_targets_pick_the_fastest_precision_and_judge_each_limit():
    legacy = "legacy_v1 (default config)"

    def row(ratio, peak):
        return {"cpu_s": ratio, f"ratio_to {legacy}": ratio, f"cpu_ratio_to {legacy}": ratio,
                "peak_fraction": peak, "peak_fraction_cpu": peak}
    rows = {"genmnist": row(0.1, 0.9),  # the legacy preset: not a default-preset row
            "genmnist default, float32": row(0.84, 0.7), "genmnist default, mixed_bfloat16": row(0.55, 0.65),
            "genmnist default, mixed_float16": row(3.0, 0.1)}
    targets = speed.default_preset_targets(rows, [legacy])
    assert targets["default float32 / legacy_v1 step, CPU time"] == [0.84, 0.85, True]
    assert targets["default best (mixed_bfloat16) / legacy_v1 step, wall time"] == [0.55, 0.5, False]
    assert targets["default best (mixed_bfloat16) of its matmul peak, CPU time"] == [0.65, 0.6, True]
    assert len(targets) == 6
