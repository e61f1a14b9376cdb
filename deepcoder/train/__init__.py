"""Phase 3: the SAD loss, the trainer, student loading, Ray Train and Ray Tune."""
