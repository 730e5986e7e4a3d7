"""Experiments: recipes that combine the layers below (RoPE methods, runtime, data, evaluation, training)."""
