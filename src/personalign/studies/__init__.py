"""Standalone studies outside the dvc pipeline (the learning study). May import every other package but pipeline."""
