"""A plan in a runtime: real models loaded offline, a plan applied to a Hugging Face model (and removed), exported
as a checkpoint and a GGUF, and checked against what transformers, vLLM and llama.cpp really compute."""
