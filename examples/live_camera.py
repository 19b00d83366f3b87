"""Score a live camera with the streaming detector and record the annotated stream.

    python examples/live_camera.py            # camera 0
    python examples/live_camera.py demo       # no camera: the built-in generated scene
    python examples/live_camera.py rtsp://user:pass@camera.local/stream1 --frames 500

The camera is read on a background thread that keeps only the newest frame, so a slow detector
never falls behind, and it reconnects by itself if the camera goes away. Stop with Ctrl-C.
"""

import argparse

from streamad import StreamDetector
from streamad.display import VideoRecorder, render_overlay
from streamad.adapters.sources import open_source

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("source", nargs="?", default="0", help="camera index, URL, video, folder or 'demo'")
parser.add_argument("--frames", type=int, default=300, help="stop after this many frames")
parser.add_argument("--out", default="live_camera.mp4", help="annotated video to write")
args = parser.parse_args()

detector = StreamDetector()  # default StreamConfig: efficientnet_lite0, works offline on a CPU

# Every source is a context manager: the camera and the file are released however the loop ends.
with open_source(args.source) as source, VideoRecorder(args.out, fps=10) as recorder:
    try:
        for n, frame in enumerate(source):          # frame.image is RGB uint8 (H, W, 3)
            # a FrameResult (ready=False while warming up); timestamp: when the frame was grabbed
            result = detector.process(frame.image, timestamp=frame.timestamp)
            if result.anomalous:
                print(f"frame {result.index}: anomaly, score {result.score:.3f} > {result.threshold:.3f}")
            # the overlay: JET heatmap scaled by the threshold, score text, red border on anomalies
            recorder.write(render_overlay(frame.image, result, label=f"{frame.source} #{result.index}"))
            if n + 1 >= args.frames:
                break
    except KeyboardInterrupt:
        pass
    stats = source.stats
print(f"{recorder.frames} frames written to {args.out}; {stats.dropped} stale frames dropped, "
      f"{stats.reconnects} reconnects")
