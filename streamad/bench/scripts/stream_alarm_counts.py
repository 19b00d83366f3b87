"""Per engine trace of ``streamad eval-stream --json``: the first frame with a threshold, and the alarms
over the whole stream (false alarms among the normal frames judged, defects found).

    python -m streamad.bench.scripts.stream_alarm_counts out/drift05.json out/drift20.json
"""

from __future__ import annotations

import json
import sys


def counts(report: dict) -> list[dict]:
    """One row per ``stream-*`` trace of an eval-stream report.

        >>> rep = {"stream": [{"label": 0}, {"label": 0}, {"label": 1}],
        ...        "traces": {"stream-4": {"scores": [None, 2.0, 9.0], "thresholds": [None, 5.0, 5.0]}}}
        >>> counts(rep)[0]["first_threshold"], counts(rep)[0]["found"], counts(rep)[0]["false_alarms"]
        (1, 1, 0)
    """
    labels = [int(f["label"]) for f in report["stream"]]
    rows = []
    for name, trace in report["traces"].items():
        if not name.startswith("stream"):
            continue
        thresholds, scores = trace["thresholds"], trace["scores"]
        first = next((i for i, t in enumerate(thresholds) if t is not None), None)
        alarm = [s is not None and t is not None and s > t for s, t in zip(scores, thresholds)]
        judged_normal = [i for i, t in enumerate(thresholds) if t is not None and labels[i] == 0]
        rows.append({"trace": name, "first_threshold": first, "normal_judged": len(judged_normal),
                     "false_alarms": sum(alarm[i] for i in judged_normal), "defective": sum(labels),
                     "found": sum(a for a, lab in zip(alarm, labels) if lab == 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", metavar="REPORT.json", help="streamad eval-stream --json outputs")
    for path in p.parse_args(argv).reports:
        with open(path, encoding="utf-8") as fh:
            for r in counts(json.load(fh)):
                rate = r["false_alarms"] / max(r["normal_judged"], 1)
                print(f"{path} {r['trace']}: threshold from frame {r['first_threshold']}, false alarms "
                      f"{r['false_alarms']} of {r['normal_judged']} ({rate:.2%}), found {r['found']} of {r['defective']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
