"""Oversight of research runs: the reward-hacking monitor and its LLM judge, verification
of the winners on held-out data and other models, and the run report."""
