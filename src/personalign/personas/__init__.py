"""Persona inference (stage 2: prefixes, pair personas, soft prefixes) and the one place a persona or prefix reaches a
prompt (conditioning). Imports core, lm, stats and data."""
