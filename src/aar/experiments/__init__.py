"""Experiments: runs and sweeps of methods from the library or from files, and their records.

This layer sits above the method library and the executors (see ``tests/test_layers.py``):
``runner.run`` scores one method over seeds against the fixed baselines; ``sweep.sweep``
runs many, on this machine or a Ray cluster.
"""
