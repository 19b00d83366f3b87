"""Which trust verdicts could calibrate the alarm threshold on a stream? A probe on eval-stream's cache.

Runs the streaming engine (W = 64, trusted rule) over the first N frames of the drifting stream that
``streamad eval-stream`` cached, records for every admitted frame which of its 50 highest-scoring
patches the channels kept as nominal, and prints, for verdicts "at least m of the top k kept", the
share of clean frames trusted, of the highest-scoring 5 % of clean frames (censoring: a verdict that
trusts these less than the others biases the threshold low), and of defective frames trusted.

    python -m streamad.bench.scripts.trust_probe out/drift/drift-<key>.npy out/drift_mtd.json --frames 450
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import streamad.stream.detector as detector_module
from streamad.config import DecisionConfig, HeatmapConfig, IndexConfig, InReachConfig, StreamConfig
from streamad.evaluation.drift_eval import trace_stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("descriptors", help="eval-stream's descriptor cache (N, P, d) .npy")
    ap.add_argument("stream_json", help="eval-stream's --json output (its 'stream' gives the labels)")
    ap.add_argument("--frames", type=int, default=450)
    args = ap.parse_args()
    desc = np.load(args.descriptors, mmap_mode="r", allow_pickle=False)
    with open(args.stream_json, encoding="utf-8") as fh:
        labels = np.array([f["label"] for f in json.load(fh)["stream"]])[:args.frames]
    kept_rows: list[np.ndarray] = []
    original = detector_module.kept_top

    def recording(order: np.ndarray, kept: np.ndarray) -> int:
        kept_rows.append(np.asarray(kept, bool)[np.asarray(order)][:50].copy())
        return original(order, kept)

    detector_module.kept_top = recording
    c = InReachConfig()
    config = StreamConfig(window=64, features=c.features, channels=c.channels, heatmap=HeatmapConfig(),
                          index=IndexConfig(), decisions=DecisionConfig(rule="trusted"), seed=c.seed)
    trace = trace_stream("probe", np.asarray(desc[:args.frames]), config, tuple(c.features.grid),
                         tuple(c.features.image_size), progress=True)
    detector_module.kept_top = original
    idx = np.array([v[0] for v in trace.verdicts])
    score = np.array([v[1] for v in trace.verdicts])
    kept = np.array(kept_rows)
    lab = labels[idx]
    high = (lab == 0) & (score >= np.quantile(score[lab == 0], 0.95))
    print(f"{len(idx)} admitted frames ({int(lab.sum())} defective); share of top-50 patches kept: {kept.mean():.3f}")
    print("| top k | at least m kept | clean frames trusted | highest-scoring 5 % of clean | defective trusted |")
    print("|---|---|---|---|---|")
    for k in (5, 10, 20, 50):
        for m in sorted({1, 2, 3, k}):
            t = kept[:, :k].sum(axis=1) >= m
            print(f"| {k} | {m} | {t[lab == 0].mean():.3f} | {t[high].mean():.3f} | "
                  f"{t[lab == 1].mean() if lab.any() else float('nan'):.3f} |")


if __name__ == "__main__":
    main()
