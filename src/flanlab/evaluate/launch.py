"""Entry point for data-parallel evaluation under torchrun:
`torchrun --nproc_per_node N -m flanlab.evaluate.launch CONFIG [--checkpoint DIR] [--output DIR]`
(what `flanlab eval CONFIG --nproc N` runs). Every process loads the model and takes its share of the batches."""
import argparse
import os
import sys
from pathlib import Path


def main(argv=None):
    from ..runtime import die_with_parent
    die_with_parent()  # a torchrun worker ends with torchrun
    from ..memory import choose_malloc
    choose_malloc()  # FLANLAB_MALLOC, inherited from the launching command
    ap = argparse.ArgumentParser(prog="flanlab.evaluate.launch")
    ap.add_argument("config", type=Path)
    ap.add_argument("--checkpoint")
    ap.add_argument("--output")
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    import torch.distributed as dist
    from ..errors import FlanlabError
    from .harness import load_eval_config, results_table, run_eval
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")  # answers are gathered as Python objects; the model work stays local
    try:
        cfg = load_eval_config(args.config, args.checkpoint, args.output)
        res = run_eval(cfg, file=args.config, base=args.config.parent).results
    except FlanlabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(results_table(res))
    if dist.is_initialized():
        dist.barrier()  # every process done before any tears the group down (a gloo teardown race aborted one)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
