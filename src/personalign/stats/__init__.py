"""Paired tests, intervals, win rates, power, the verdicts a claim gets, and how two log-probs decide a preference pair.
Imports nothing else of personalign."""
