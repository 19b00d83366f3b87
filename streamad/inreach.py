"""``streamad.inreach``: the public name of batch InReaCh, kept for users; it lives in :mod:`streamad.batch.inreach`."""

from streamad.batch.inreach import InReaCh, InReaChPatchModel

__all__ = ["InReaCh", "InReaChPatchModel"]
