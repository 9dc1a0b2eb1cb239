"""Datasets: sources, builders, deterministic splits, the vault and the label-free export."""
