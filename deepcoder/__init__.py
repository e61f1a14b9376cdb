"""DeepCoder: Structured Agent Distillation (SAD) of a reasoning teacher into a small coding agent."""

__version__ = "0.1.0"
