import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# bf16 numerics are tested on any CPU (flanlab otherwise falls back to fp32 where bf16 is only emulated)
os.environ.setdefault("FLANLAB_EMULATED_BF16", "1")
