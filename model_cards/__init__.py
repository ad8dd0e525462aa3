"""Jinja templates of the model and dataset cards, installed as `hf_active_synth.model_cards` (see `cards.py`)."""
