"""Problem sets and (later) the trajectory-to-dataset pipeline."""
