"""Models shared by training and evaluation: presets, checkpoint loading (HF directories, GGUF files,
installed model packages by short name) and tokenizers."""
