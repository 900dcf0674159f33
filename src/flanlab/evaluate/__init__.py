"""Evaluation: Flan's held-out benchmarks with direct, CoT and self-consistency prompting."""
