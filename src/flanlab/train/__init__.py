"""Packed instruction finetuning for encoder-decoder (T5) and decoder-only (Llama) models."""
