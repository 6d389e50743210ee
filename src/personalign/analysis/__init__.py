"""Reporting: figures, tables and tested claims read from the results files the stages write. Modules here may import
config, statistics, figures, verdicts, seeding and persona_sources; never a model, never torch."""
