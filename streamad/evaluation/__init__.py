"""Evaluation on labelled data: data sets and the corruption protocol, metrics, batch and streaming
evaluation, the descriptor cache, the drifting stream and its per-run metrics (docs/DESIGN.md section 7).

Nothing in the engine (core, index, stream) imports from here."""
