"""Building the world's preference pairs (stage 1) and loading public datasets into the canonical record. Imports core
and lm."""
