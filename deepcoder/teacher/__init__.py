"""Teachers: policies that solve tasks (reference solutions now; API models later)."""
