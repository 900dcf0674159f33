"""Entry point for torchrun / accelerate: `torchrun --nproc_per_node 2 -m flanlab.train.launch CONFIG`."""
import sys

from .trainer import TrainConfig, train


def main(argv=None):
    argv = argv or sys.argv[1:]
    from ..cli import _section
    from ..config import validate
    from pathlib import Path
    path = Path(argv[0])
    data, sec = _section(path, "train")
    cfg = validate(TrainConfig, data, file=path, prefix=sec)
    for kv in argv[1:]:  # key=value overrides, e.g. output=runs/x steps=10
        k, v = kv.split("=", 1)
        cfg = validate(TrainConfig, {**cfg.model_dump(), k: v}, file="<command line>")
    s = train(cfg, progress=False, file=path)
    import torch.distributed as dist
    if dist.is_initialized():
        if dist.get_rank() == 0:
            print(s)
        dist.destroy_process_group()
    else:
        print(s)


if __name__ == "__main__":
    main()
