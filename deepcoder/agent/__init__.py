"""The agent core shared by generation, evaluation and serving: format, loop, policies."""
