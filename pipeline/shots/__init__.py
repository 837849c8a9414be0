"""Shot boundary detection on small frames: features, the streaming detector, candidate sampling."""
