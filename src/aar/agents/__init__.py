"""Research agents: the LLM researcher loop, its tools, backends, budgets and the MCP adapter.

Nothing is imported here on purpose: the SDK-backed modules (``backends``, ``mcp_server``)
load their SDKs only when they are imported themselves.
"""
