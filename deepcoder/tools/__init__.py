"""Tools the agent calls: sandboxed Python, documentation retrieval."""
