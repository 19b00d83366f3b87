"""bench-serve's table: the figures it prints come from the rows, admissions beside the frame rates."""

from __future__ import annotations

from streamad.bench.serve import LEARNER, SUMMARY, Row, table


def test_the_table_puts_each_row_in_its_column_with_the_admission_rates() -> None:
    rows = [Row(2, "serve", (4.0, 6.0), 30.0, 10.0, {"mean_batch": 1.5, "admissions_per_s": 2.25}),
            Row(2, "watch", (5.0, 5.0), 25.0, 8.0, {"admissions_per_s": None})]
    lines = table(rows).splitlines()
    assert lines[2] == "| 2 | 10.00 | 8.00 | 1.25x | 4.00 / 5.00 | 5.00 / 5.00 | 0.80 | 1.50 | 2.25 / - |"
    assert lines[0].count("|") == lines[2].count("|")


def test_the_lines_it_parses_in_the_form_watch_prints_them() -> None:
    out = ("frames 150 in 28.3 s (5.3 fps), stopped: max_frames\n"
           "background learner: 62 admissions (2.20/s), 87 due frames skipped for a newer one\n")
    assert SUMMARY.search(out).groups() == ("150", "28.3", "5.3")
    assert LEARNER.search(out).group(1) == "62"
