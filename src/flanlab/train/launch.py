"""Entry point for torchrun / accelerate:
`torchrun --nproc_per_node 2 -m flanlab.train.launch CONFIG [key=value ...]`."""
import sys
from pathlib import Path

from ..memory import choose_malloc
from ..runtime import die_with_parent
from .trainer import load_train_config, train


def main(argv=None):
    die_with_parent()  # a torchrun worker ends with torchrun
    choose_malloc()  # FLANLAB_MALLOC, inherited from the launching command
    argv = argv or sys.argv[1:]
    path = Path(argv[0])
    s = train(load_train_config(path, argv[1:]), progress=False, file=path).summary
    import torch.distributed as dist
    if dist.is_initialized():
        if dist.get_rank() == 0:
            print(s)
        dist.barrier()  # every process done before any tears the group down
        dist.destroy_process_group()
    else:
        print(s)


if __name__ == "__main__":
    main()
