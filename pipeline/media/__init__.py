"""Reading media safely: ffprobe, the sandboxed ffmpeg spawn, decoding, reference-frame segments."""
