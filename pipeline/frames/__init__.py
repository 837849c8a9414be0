"""Frames of a scene: quality scores, which frames to keep, stored frame files, contact sheets."""
