"""What a model card's "How to use" and "Reproduce" sections show: the code that loads the checkpoint and prepares
its inputs (per modality and library), and the full command of the run.

The decisions are made here, from what the checkpoint folder holds and the run's settings; the code lines themselves
are in `model_cards/model_card.md`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

__all__ = [
    "IMAGE_CLASSIFICATION",
    "TEXT_CLASSIFICATION",
    "Preprocessing",
    "UsageCode",
    "preprocessing_path",
    "reproduce_command",
]

IMAGE_CLASSIFICATION = "image-classification"
TEXT_CLASSIFICATION = "text-classification"
CONSOLE_SCRIPT = "hf-active-synth"
# pipeline tag -> (model class, processor class, the processor's keyword for a batch of raw inputs)
_AUTO_CLASSES = {
    IMAGE_CLASSIFICATION: ("AutoModelForImageClassification", "AutoImageProcessor", "images"),
    TEXT_CLASSIFICATION: ("AutoModelForSequenceClassification", "AutoTokenizer", "texts"),
}
# Without a known task, the cards have always shown the text classes (the loop's first modality).
_FALLBACK_TASK = TEXT_CLASSIFICATION
_LOADABLE_LIBRARIES = frozenset({"transformers", "peft"})


@dataclass(frozen=True)
class Preprocessing:
    """An importable batched function from raw columns to model inputs, e.g. `hf_active_synth.tasks.digits`'s
    `preprocess_digits`, shown in the usage code of a checkpoint saved without a processor.

    Args:
        module (`str`): The module to import it from.
        name (`str`): The function's name in that module.
    """

    module: str
    name: str

    @classmethod
    def parse(cls, path: str | None) -> Preprocessing | None:
        """From `"package.module.function"` or `"package.module:function"`; `None` for an empty path."""
        if not path:
            return None
        module, separator, name = path.rpartition(":") if ":" in path else path.rpartition(".")
        if not (module and separator and name.isidentifier()):
            raise ValueError(
                f"The `preprocessing` setting {path!r} must name a function as 'package.module.function' or "
                "'package.module:function'."
            )
        return cls(module, name)


def preprocessing_path(function: Callable[..., Any] | None) -> str | None:
    """The `"module.function"` path of a preprocessing function, for the `preprocessing` run setting, or `None`
    when it cannot be imported by that path (a lambda, a closure, a method).

    A `functools.partial` of an importable function gives that function's path (its keywords, such as the image
    column, are rendered from the run's settings).
    """
    while isinstance(function, functools.partial):
        function = function.func
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or not name.isidentifier():
        return None
    # Only a path that imports back to the same object is worth printing in a card.
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return f"{module}.{name}" if found is function else None


@dataclass(frozen=True)
class UsageCode:
    """The "How to use" snippet of a model card: which classes load the checkpoint and how its inputs are built.

    Args:
        library (`str`): `"transformers"`, `"peft"` or another library (a plain `state_dict` in safetensors).
        pipeline_tag (`str`, *optional*): `"image-classification"` or `"text-classification"`.
        has_processor (`bool`, defaults to `True`): Whether the checkpoint folder holds its processor (image processor
            or tokenizer).
        preprocessing (`Preprocessing`, *optional*): The run's preprocessing function, shown when there is no
            processor.
        input_column (`str`, *optional*): The column that function reads; defaults to `"image"` or `"text"`.
        base_model (`str`, *optional*): The base model of a `peft` adapter (also its processor, without its own).
    """

    library: str
    pipeline_tag: str | None = None
    has_processor: bool = True
    preprocessing: Preprocessing | None = None
    input_column: str | None = None
    base_model: str | None = None

    @classmethod
    def from_settings(
        cls,
        library: str,
        pipeline_tag: str | None,
        settings: Mapping[str, Any],
        has_processor: bool = True,
        base_model: str | None = None,
    ) -> UsageCode:
        """Reads `preprocessing` (a dotted function path, see `preprocessing_path`) and `input_column` from the
        run's settings."""
        return cls(
            library=library,
            pipeline_tag=pipeline_tag,
            has_processor=has_processor,
            preprocessing=Preprocessing.parse(settings.get("preprocessing")),
            input_column=settings.get("input_column"),
            base_model=base_model,
        )

    def template_values(self, repo: str, revision: str, local: bool) -> dict[str, Any]:
        """The values of the card's usage snippet for the checkpoint at `repo` (a Hub id, or a folder if `local`)."""
        task = self.pipeline_tag if self.pipeline_tag in _AUTO_CLASSES else _FALLBACK_TASK
        model_class, processor_class, inputs_name = _AUTO_CLASSES[task]
        revision_argument = f', revision="{revision}"' if revision != "main" and not local else ""
        if self.has_processor:
            processor_source, processor_revision = repo, revision_argument
        elif self.library == "peft" and self.base_model and self.preprocessing is None:
            processor_source, processor_revision = self.base_model, ""
        else:
            processor_source, processor_revision = None, ""
        return {
            "loadable": self.library in _LOADABLE_LIBRARIES,
            "library": self.library,
            "model_class": model_class,
            "processor_class": processor_class,
            "processor_source": processor_source,
            "processor_revision": processor_revision,
            "inputs_name": inputs_name,
            "preprocessing": None if processor_source else self.preprocessing,
            "input_column": self.input_column or inputs_name.removesuffix("s"),
            "repo": repo,
            "revision": revision_argument,
            "local": local,
            "base_model": self.base_model,
        }


def reproduce_command(command: str | None) -> str | None:
    """The command that reruns a run, from the `command` setting (`" ".join(sys.argv)` of the run).

    A recipe script is run under `accelerate launch` (as every run goes, also on one process), and the console
    script's absolute path is shortened to its name. Anything else is returned as it is.
    """
    if not command:
        return None
    program, space, arguments = command.strip().partition(" ")
    if PurePosixPath(program).name == CONSOLE_SCRIPT:
        program = CONSOLE_SCRIPT
    elif program.endswith(".py"):
        program = f"accelerate launch {program}"
    return f"{program}{space}{arguments}"
