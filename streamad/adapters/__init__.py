"""I/O edges of streamad, imported as ``streamad.adapters``: OpenCV sources, ZeroMQ, display."""
