"""The InReaCh algorithm on descriptors: mutual-nearest-neighbour association, channel trimming, the
batch channels (the oracle) and the incremental channels of a sliding window (docs/DESIGN.md sections 2-3).

Imports nothing but numpy and :mod:`streamad.config`: no torch, no OpenCV, no I/O.
"""
