"""Where a video comes from: local paths, URL fetch behind the network guard, uploads, video naming."""
