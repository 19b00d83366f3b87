"""How well could an alarm threshold do on a stream? Rules replayed on ``streamad eval-stream``'s scores.

Takes the JSON that ``streamad eval-stream --json`` wrote and one engine trace in it, and prints per run
the clean and defective frames' score levels, then the engine's scores judged again by: the rolling
quantile at two rates, the screened rule (and how many defects lie above its screen), and an
*oracle* conformal threshold calibrated on exactly the clean frames (what a perfect trust verdict
would give: an upper bound for any rule that learns from frames it trusts). Replays judge the same
scores; they do not rerun the engine (a rule also decides which frames may become seeds, so an engine
run with a rule can differ slightly from its replay).

    python -m streamad.bench.scripts.alarm_calibration_probe out/alarms/mtd_0.2.json --trace stream-64+screened
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from streamad.config import DecisionConfig
from streamad.evaluation.drift_eval import MethodTrace, apply_rule
from streamad.stream.decisions import ScoreDecisions


def oracle_thresholds(scores: list[float | None], labels: np.ndarray, start: int, alpha: float) -> list[float | None]:
    """The trusted rule's conformal threshold with every clean frame trusted and no defect (no drift restart)."""
    dec = ScoreDecisions(DecisionConfig(rule="trusted", false_alarm_rate=alpha, drift="none"))
    out: list[float | None] = []
    for i, s in enumerate(scores):
        if i < start or s is None:
            out.append(None)
            continue
        out.append(dec.update(s).threshold)
        if labels[i] == 0:
            dec.trust(s, True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="streamad eval-stream --json output")
    ap.add_argument("--trace", default="stream-64+screened", help="the engine trace whose scores are judged")
    ap.add_argument("--rate", type=float, default=0.01, help="configured false alarm rate (default 0.01)")
    args = ap.parse_args()
    with open(args.json, encoding="utf-8") as fh:
        doc = json.load(fh)
    labels = np.array([f["label"] for f in doc["stream"]])
    runs = np.array([f["run"] for f in doc["stream"]])
    names = list(dict.fromkeys(runs))
    tr = doc["traces"][args.trace]
    scores = tr["scores"]
    s = np.array([np.nan if x is None else x for x in scores])
    start = int(np.flatnonzero(~np.isnan(s))[0])
    print(f"{args.trace}: {len(s)} frames, {int(labels.sum())} defective, judged from frame {start}")
    print("| run | clean median / p99 | defect median |\n|---|---|---|")
    for r in names:
        m = runs == r
        print(f"| {r} | {np.nanmedian(s[m & (labels == 0)]):.1f} / {np.nanpercentile(s[m & (labels == 0)], 99):.1f} "
              f"| {np.nanmedian(s[m & (labels == 1)]):.1f} |")
    trace = MethodTrace(args.trace, scores, tr["thresholds"], tr["drift"], np.zeros((len(s), 1, 1)))
    designs = {f"quantile {args.rate:g}": DecisionConfig(rule="quantile", false_alarm_rate=args.rate),
               f"quantile {2 * args.rate:g}": DecisionConfig(rule="quantile", false_alarm_rate=2 * args.rate),
               f"screened {args.rate:g}": DecisionConfig(rule="screened", false_alarm_rate=args.rate)}
    print("\n| design | found per run | found | false alarms |\n|---|---|---|---|")
    rows = {name: apply_rule(name, trace, cfg, start).thresholds for name, cfg in designs.items()}
    rows[f"oracle {args.rate:g} (clean frames only)"] = oracle_thresholds(scores, labels, start, args.rate)
    for name, th in rows.items():
        judged = np.array([t is not None for t in th])
        alarm = np.array([t is not None and x > t for x, t in zip(s, th)])
        per_run = " ".join(str(int(alarm[(runs == r) & judged & (labels == 1)].sum())) for r in names)
        clean = judged & (labels == 0)
        print(f"| {name} | {per_run} | {int(alarm[judged & (labels == 1)].sum())} of {int((judged & (labels == 1)).sum())} "
              f"| {alarm[clean].mean():.4f} ({int(alarm[clean].sum())} of {int(clean.sum())}) |")
    dec = ScoreDecisions(DecisionConfig(rule="screened", false_alarm_rate=args.rate))
    bound = np.full(len(s), np.nan)
    for i in range(start, len(s)):
        if not np.isnan(s[i]):
            dec.update(float(s[i]))
            bound[i] = dec.screen
    j = ~np.isnan(bound)
    print(f"\nabove the screen bound (judged frames): defects {np.mean(s[j & (labels == 1)] > bound[j & (labels == 1)]):.3f}, "
          f"clean {np.mean(s[j & (labels == 0)] > bound[j & (labels == 0)]):.4f}")


if __name__ == "__main__":
    main()
