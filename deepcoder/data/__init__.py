"""Problem sets and generators, the durable trajectory store, quality control, and phase 2 (masks on Ray Data)."""
