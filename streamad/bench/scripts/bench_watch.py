"""Measure `streamad watch` on a video file: frames per second with and without --publish, and the
time per frame of each stage (median publish ms/frame included).

    python -m streamad.bench.scripts.bench_watch ../shared/data/mvtec_ad/bottle/test --frames 200

It first writes a video with cv2.VideoWriter from the folder's real images: the images of its
``good`` subfolder in a loop, with one image from the other subfolders (the defects) every
``--defect-every`` frames (a folder without subfolders: its images in a loop). Then it runs, one after
the other,

    streamad watch VIDEO --quiet --stats
    streamad watch VIDEO --quiet --stats --publish tcp://127.0.0.1:PORT   (with `streamad listen` attached)

and prints both summaries and a comparison. The end-to-end rate is frames / seconds of the watch
loop (decoding, detector, publishing), after the model has loaded.
"""

import argparse
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)


def frame_list(folder: Path, n: int, defect_every: int) -> list[Path]:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subfolders:
        normal, defects = images_in(folder), []
    else:
        good = folder / "good"
        normal = images_in(good) if good.is_dir() else []
        defects = [p for d in subfolders if d != good for p in images_in(d)]
        if not normal:  # no good/ subfolder: every image is "normal" for the benchmark's purpose
            normal, defects = defects, []
    if not normal:
        sys.exit(f"no images in {folder}")
    out, d = [], 0
    for i in range(n):
        if defects and defect_every and i % defect_every == defect_every - 1:
            out.append(defects[d % len(defects)])
            d += 1
        else:
            out.append(normal[(i - d) % len(normal)])
    return out


def write_video(paths: list[Path], video: Path, fps: float) -> tuple[int, int]:
    first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
    h, w = first.shape[:2]
    fourcc = "mp4v" if video.suffix.lower() in (".mp4", ".mov", ".m4v") else "MJPG"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        sys.exit(f"cannot write {video} with {fourcc}")
    for p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        writer.write(image)
    writer.release()
    return w, h


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watch(video: Path, extra: list[str], preset: str) -> tuple[str, dict]:
    cmd = [sys.executable, "-m", "streamad.cli", "watch", str(video), "--quiet", "--stats", "--preset", preset,
           *extra]
    print("$", " ".join(["streamad", *cmd[3:]]), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"streamad watch failed ({out.returncode}):\n{out.stderr}")
    figures = {}
    m = re.search(r"frames (\d+) in ([\d.]+) s \(([\d.]+) fps\)", out.stdout)
    if m:
        figures.update(frames=int(m.group(1)), seconds=float(m.group(2)), fps=float(m.group(3)))
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] in ("read", "detect", "overlay", "publish", "record"):
            figures[parts[0]] = float(parts[2])  # median ms/frame
    return out.stdout, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="image folder (e.g. an MVTec AD category's test folder)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--defect-every", type=int, default=10)
    parser.add_argument("--video", type=Path, default=Path("bench_watch.mp4"), help="video to write (.mp4 or .avi)")
    parser.add_argument("--fps", type=float, default=10.0, help="nominal frame rate of the video")
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()

    paths = frame_list(args.folder, args.frames, args.defect_every)
    w, h = write_video(paths, args.video, args.fps)
    print(f"wrote {args.video}: {len(paths)} frames {w}x{h} from {args.folder}", flush=True)

    plain_out, plain = watch(args.video, [], args.preset)
    print(plain_out, flush=True)

    address = f"tcp://127.0.0.1:{free_port()}"
    listen_cmd = [sys.executable, "-m", "streamad.cli", "listen", address, "--count", str(args.frames),
                  "--timeout", "300"]
    listener = subprocess.Popen(listen_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pub_out, pub = watch(args.video, ["--publish", address], args.preset)
    print(pub_out, flush=True)
    try:
        l_out, l_err = listener.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        listener.kill()
        l_out, l_err = listener.communicate()
    received = len(l_out.splitlines())
    print(f"listener received {received} of {pub.get('frames', '?')} frames" + (f"; {l_err.strip()}" if l_err.strip()
                                                                                 else ""))

    print("\n| run | frames | loop s | fps | detect ms/frame (median) | publish ms/frame (median) |")
    print("|---|---|---|---|---|---|")
    for name, f in (("watch VIDEO", plain), ("watch VIDEO --publish ADDR", pub)):
        print(f"| `{name}` | {f.get('frames')} | {f.get('seconds')} | {f.get('fps')} | {f.get('detect', '-')} | "
              f"{f.get('publish', '-')} |")


if __name__ == "__main__":
    main()
