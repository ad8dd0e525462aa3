"""The recipes' code, importable so that `recipes/*.py` scripts and the `hf-active-synth` command share it.

`base` holds the shape every recipe shares (`Recipe`: parser, trainer per run, run or compare, CLI), `parsing` the
`--config file.yaml` handling, `running` the run-mode flags; `image_classification` and `text_classification` keep
only what differs (data, model, generator, filters, corruptions).
"""
