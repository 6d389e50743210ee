"""The command line, dvc.yaml's computed dependencies, rendered notebooks as records and the reproduction check. May
import every other package."""
