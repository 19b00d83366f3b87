"""The previous frame's nominal distances as the next frame's search guess (the scorer's side).

A fixed camera sees nearly the same patch at the same place frame after frame, so a patch's distance to
the nominal set changes little between frames. Given a guess, the IVF index first scans only the lists
that may hold a vector within it (``BaseIndex.query(..., expect=)``), then, for the patches whose answer
lay beyond, the lists that may hold one nearer than the nearest found: no guess makes an answer worse,
it changes only the work. Where
most answers lie beyond the guess (a moving scene, unrelated images one after another), guessing costs
a second search, so the guess is dropped for ``pause`` frames.

``slack`` 1.5 (the guess is 1.5 x the last distance) was chosen on the demo stream by speed alone, as the
guess cannot change an answer (``python -m streamad.bench.scripts.guess_probe``: 1.1, 1.25, 1.5 and 2.0
left 36 %, 17 %, 7 % and 2 % of the answers beyond the guess and scored a frame in 42.4, 22.3, 19.6 and
21.1 ms at the median, against 42.7 without a guess; docs/DESIGN.md section 4).

    >>> import numpy as np
    >>> g = DistanceGuess(slack=1.25, give_up=0.5, pause=2)
    >>> g.guess(3) is None                              # nothing seen yet
    True
    >>> g.observe(np.array([1.0, 2.0, 4.0])); g.guess(3).tolist()
    [1.25, 2.5, 5.0]
    >>> g.observe(np.array([9.0, 9.0, 1.0]))            # two of three beyond the guess: paused
    >>> g.guess(3) is None, g.guess(3) is None, g.guess(3).tolist()
    (True, True, [11.25, 11.25, 1.25])
"""

from __future__ import annotations

import numpy as np


class DistanceGuess:
    """The last frame's patch distances times ``slack``, offered as the next frame's guess unless more than
    ``give_up`` of the last guessed frame's answers lay beyond their guess (then none for ``pause`` frames).

    Owned by the scoring thread (no lock): ``guess`` before a frame's search, ``observe`` after it."""

    def __init__(self, slack: float = 1.5, give_up: float = 0.5, pause: int = 8) -> None:
        if not slack >= 1.0 or not 0.0 < give_up <= 1.0 or pause < 0:
            raise ValueError(f"DistanceGuess needs slack >= 1, give_up in (0, 1] and pause >= 0, got {slack!r}, "
                             f"{give_up!r}, {pause!r}")
        self.slack, self.give_up, self.pause = float(slack), float(give_up), int(pause)
        self._last: np.ndarray | None = None
        self._offered: np.ndarray | None = None
        self._paused = 0
        self.offered = self.beyond = 0  # guesses offered and answers beyond them (for measurement)

    def guess(self, n: int) -> np.ndarray | None:
        """The guess for a frame of ``n`` patches, or None (nothing seen, another grid, or paused)."""
        self._offered = None
        if self._paused > 0:
            self._paused -= 1
            return None
        if self._last is None or len(self._last) != n:
            return None
        self._offered = self._last * self.slack
        return self._offered

    def observe(self, distances: np.ndarray) -> None:
        """The frame's answers: kept for the next guess, and checked against the guess offered for it."""
        d = np.asarray(distances, np.float64).reshape(-1)
        if self._offered is not None and len(self._offered) == len(d):
            beyond = int((d > self._offered).sum())
            self.offered += len(d)
            self.beyond += beyond
            if beyond > self.give_up * len(d):
                self._paused = self.pause
        self._offered = None
        self._last = np.where(np.isfinite(d), d, np.inf)
