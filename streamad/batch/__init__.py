"""Batch models, scikit-learn style (``fit`` / ``predict``): the image detector shell, InReaCh (the
paper's method) and the baselines (PatchCore, SPADE, PNI)."""
