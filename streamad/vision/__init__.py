"""Images to patch descriptors and back: frame checks, backbones, the patch feature extractor, heatmaps
and the positional test. torch and OpenCV live here (docs/DESIGN.md section 2, step 1)."""
