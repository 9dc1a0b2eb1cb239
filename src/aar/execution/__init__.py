"""Where sandboxed experiments run: this machine's sandbox (``local``, the default) or the
nodes of a Ray cluster (``ray``), behind one interface (:class:`Executor`)."""

from aar.execution.base import (
    KINDS,
    Executor,
    ExecutorConfig,
    Experiment,
    Outcome,
    Resources,
    make_executor,
)

__all__ = ["KINDS", "Executor", "ExecutorConfig", "Experiment", "Outcome", "Resources",
           "make_executor"]
