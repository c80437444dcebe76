"""`python -m seqbench.speed.memory`: XLA's memory estimate against the measured peak."""

import sys

import pytest

from seqbench.speed import memory as calibration

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self")


def test_one_program_is_measured_in_its_own_process():
    row = calibration.measure(("lstm", 8, 16, 2, "map", "gradient"))
    assert row["architecture"] == "lstm" and row["pass"] == "gradient"
    assert row["temporaries"] > 0 and row["in_out"] > 0 and row["rss_before"] > 0
    assert row["ratio"] == row["peak_growth"] / (row["in_out"] + row["temporaries"])


def test_the_table_says_whether_the_check_covers_the_largest_ratio_of_each_pass():
    def row(ratio, kind="forward"):
        return {
            **dict(architecture="lru", length=8, sequences=4, seeds=2),
            **dict(seeds_over="map", temporaries=10**9, in_out=0, peak_growth=ratio * 10**9),
            **{"pass": kind, "ratio": ratio},
        }

    text = calibration.table([row(1.0), row(2.0), row(0.99, "gradient")])
    assert "| lru T=8, 4 sequences, 2 seeds map, forward | 1.00 | 2.00 | 2.00 |" in text
    assert text.splitlines()[-2:] == [
        "Forward passes: largest ratio 2.00; on a CPU the check counts their temporaries x 2.5, "
        "which covers it.",
        "Gradient passes: largest ratio 0.99; on a CPU the check counts their temporaries x 1, "
        "which covers it.",
    ]
    assert "x 2.5, 20% short of it." in calibration.table([row(3.0)])
    assert "x 1, 10% short of it." in calibration.table([row(1.1, "gradient")])
