"""The recipes' code, importable so that `recipes/*.py` scripts and the `hf-active-synth` command share it."""
