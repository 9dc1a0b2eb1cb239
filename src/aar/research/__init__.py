"""Research runs: N researchers working in parallel against the evaluation server.

- ``layout``: the run directory contract (run.json, secrets.json, per-agent events/status).
- ``context``: one researcher's operations (sandbox runs with label-free diagnostics,
  submissions, findings with code snapshots); ``aar.research.tools`` wraps them as
  tools for LLM researchers and ``aar mcp``.
- ``genome`` + ``builtin``: the built-in researcher's evolutionary search over the
  method library's building blocks.
- ``directions``: the nine editable starting directions (``directions/*.md``).
- ``orchestrator`` + ``agent_main``: ``aar research`` (server, tokens, processes, budgets,
  live view, resume); ``live``: an in-process evaluation server.
"""
