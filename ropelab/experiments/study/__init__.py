"""Notebook 07's study: the paper's experiment in miniature (a tiny LLaMA pre-trained at L, extended by every method,
fine-tuned under one recipe and scored past L, paired by seed), with its sweeps, searched plan and tables."""
