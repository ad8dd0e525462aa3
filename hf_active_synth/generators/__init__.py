"""Generators propose synthetic candidates for a cycle's targets.

`TextGenerationGenerator` (LLMs in process), `EndpointTextGenerator` (LLMs behind an OpenAI-compatible or TGI
endpoint) and `DiffusionGenerator` (diffusers pipelines) are imported from their modules so that using one does not
import the other's stack: `from hf_active_synth.generators.text import ...`, `...generators.endpoint import ...`.
"""

from .base import GenerationRequest, Generator, SynthesisTarget
from .pool import PoolAcquisitionGenerator

__all__ = ["GenerationRequest", "Generator", "PoolAcquisitionGenerator", "SynthesisTarget"]
