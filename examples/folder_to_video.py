"""Run the streaming detector over a folder of images and write an annotated video.

    python examples/folder_to_video.py ../shared/data/mvtec_ad/bottle/test/broken_large out.mp4

Images are read in natural name order (frame2 before frame10); unreadable files are skipped and
counted. Prints the most anomalous images at the end.
"""

import argparse

from streamad import StreamDetector
from streamad.display import VideoRecorder, render_overlay
from streamad.adapters.sources import FolderSource

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("folder")
parser.add_argument("out", help="video file to write (.mp4 or .avi)")
parser.add_argument("--fps", type=float, default=5.0)
args = parser.parse_args()

detector = StreamDetector()
scores = []
with FolderSource(args.folder) as source, VideoRecorder(args.out, fps=args.fps) as recorder:
    for frame in source:
        result = detector.process(frame.image)
        name = source.paths[frame.index].name   # frame.index is the file's position in the folder
        recorder.write(render_overlay(frame.image, result, label=name))
        if result.ready:
            scores.append((result.score, name))
print(f"{recorder.frames} frames -> {args.out} ({source.stats.skipped} unreadable files skipped)")
for score, name in sorted(scores, reverse=True)[:5]:
    print(f"  {score:8.3f}  {name}")
