"""Phase 4: evaluation. Functional correctness (HumanEval/MBPP pass@k), model runners, the agentic
suite, robustness and safety, comparison and reports, all on the shared sandbox and agent loop."""
