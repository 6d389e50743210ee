"""The language models a stage runs: the base model, generators, judges, the embedder, the papers' prompts and the
artifacts (fingerprints, caches, trained adapters). Imports core."""
