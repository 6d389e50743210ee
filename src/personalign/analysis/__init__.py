"""Reporting: figures, tables and tested claims read from the results files the stages write. Imports core and
stats (the evaluation package's record types for type checking only); never a model, never torch."""
