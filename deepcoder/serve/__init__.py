"""Ray Serve applications: the agent app (``deepcoder.serve.app``) and the sandbox alone (``sandbox_app``)."""
