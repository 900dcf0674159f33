"""flanlab: the Flan system (Chung et al., 2022) in miniature.

Pipeline stages, one subpackage each:
  tasks/       task collection: Dataset x TaskCategory = Task, templates, sources
  formats/     zero/few-shot, options, chain-of-thought, input inversion, exemplar-only
  mixture/     examples-proportional mixing with caps, Flan 2022 submixtures, decontamination, shards
  models/      presets, checkpoints, tokenizers, packed forward (per-segment attention) - shared by train and eval
  train/       packed encoder-decoder / decoder-only finetuning
  evaluate/    MMLU, BBH, TyDiQA, MGSM, BIG-bench; direct, CoT, self-consistency
  experiments/ end-to-end runs, scaling sweeps and reports
"""
__version__ = "0.1.0"
