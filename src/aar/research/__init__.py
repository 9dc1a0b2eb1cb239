"""Research runs: N researchers working in parallel against the evaluation server."""
