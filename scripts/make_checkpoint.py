#!/usr/bin/env python3
"""Write a CLIP checkpoint of RANDOMLY INITIALISED weights for an open_clip model name.

For plumbing only: the offline demo, Docker builds and CI can set
CLIP_CHECKPOINT to this file and exercise loading, embedding, storage and
search without any network. Similarities computed with it are meaningless;
it is NOT a substitute for trained weights (search quality needs a real
CLIP_PRETRAINED tag or a checkpoint of trained weights).

    python scripts/make_checkpoint.py ViT-B-32 weights/ViT-B-32-random.pt
    python scripts/make_checkpoint.py my-arch weights/my-arch.safetensors --config my-arch.json

``--config`` (an open_clip model config JSON, for an architecture open_clip
does not ship) is copied next to the output as ``<model_name>.json``, where
vidx's loader and the Dockerfile look for it. ``--half`` stores fp16 (half
the size; vidx loads it as fp32 on CPU, fp16 on CUDA).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_name", help="open_clip architecture, e.g. ViT-B-32")
    parser.add_argument("output", type=Path, help="checkpoint file to write (.pt, .pth, .bin or .safetensors)")
    parser.add_argument("--config", type=Path, help="open_clip config JSON for a custom architecture")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same weights)")
    parser.add_argument("--half", action="store_true", help="store fp16 weights")
    args = parser.parse_args(argv)

    import open_clip
    import torch

    if args.config is not None:
        config = json.loads(args.config.read_text())
        if not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
            print(f"error: {args.config} is not an open_clip model config", file=sys.stderr)
            return 2
        # open_clip names a config after its file: place it as <model_name>.json beside the output
        args.output.parent.mkdir(parents=True, exist_ok=True)
        target = args.output.parent / f"{args.model_name}.json"
        if not target.exists() or target.resolve() != args.config.resolve():
            shutil.copyfile(args.config, target)
        open_clip.add_model_config(target)
    if open_clip.get_model_config(args.model_name) is None:
        print(f"error: unknown open_clip model {args.model_name!r} (give --config for a custom one)", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    model = open_clip.create_model(args.model_name, pretrained=None)
    state = {k: (v.half() if args.half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    if args.output.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp), metadata={"vidx": "random weights, plumbing only"})
    else:
        torch.save(state, tmp)
    tmp.replace(args.output)
    embed_dim = open_clip.get_model_config(args.model_name)["embed_dim"]
    size_mb = args.output.stat().st_size / 1e6
    print(f"wrote {args.output} ({size_mb:.0f} MB): RANDOM weights for {args.model_name} ({embed_dim}-d), "
          f"plumbing only; use CLIP_MODEL_NAME={args.model_name} CLIP_CHECKPOINT={args.output}")
    if embed_dim != 512:
        print(f"warning: {embed_dim}-d embeddings; vidx refuses widths other than 512", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
