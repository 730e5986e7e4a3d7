"""Long-context evaluations: perplexity, passkey retrieval, needle-in-a-haystack and LongBench-E."""
