"""Ray Serve applications (the agent app arrives with the serving stage)."""
