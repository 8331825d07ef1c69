"""bench/process_speed.py: the timed commands and the report."""

from bench import common, process_speed


def test_variants_time_legacy_and_each_precision_of_the_default_preset():
    table = process_speed.variants(["float32", "mixed_bfloat16"])
    assert list(table) == ["legacy_v1.train", "genmnist default, float32", "genmnist default, mixed_bfloat16"]
    argv = table["genmnist default, mixed_bfloat16"](120, "OUT", "DATA")
    assert argv[:2] == ["-m", "genmnist.train"]
    assert argv[argv.index("--steps") + 1] == "120" and argv[argv.index("--precision") + 1] == "mixed_bfloat16"
    assert table["legacy_v1.train"](20, "OUT", "DATA")[:2] == ["-m", "legacy_v1.train"]


def test_report_judges_both_ratios_and_the_statistics_share():
    def row(wall, cpu):
        return {"wall_s": 0.3, "cpu_s": 0.3, "wall_ratio": wall, "cpu_ratio": cpu}
    info = {"command": "python -m bench.process_speed", "date": "today",
            "machine": {**common.machine(), "load_average_end": (2.0, 1.0, 1.0)}, "short": 20, "long": 120,
            "rounds": 2, "per_step": {"legacy_v1.train": row(1.0, 1.0), "genmnist default, float32": row(0.95, 0.85),
                                      "genmnist default, mixed_bfloat16": row(0.5, 0.45)},
            "statistics": {"float32": {"recompute_s": 0.2, "step_s": 0.2, "grids": 29, "share": 0.0029}}}
    text = process_speed.markdown(info)
    assert "| genmnist default, float32 | 0.300 | 0.950 | 0.300 | 0.850 | no |" in text
    assert "| genmnist default, mixed_bfloat16 | 0.300 | 0.500 | 0.300 | 0.450 | yes |" in text
    assert "| float32 | 0.200 | 0.200 | 29 | 0.29% | yes |" in text
