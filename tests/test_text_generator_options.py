"""The text recipe's options for `TextGenerationGenerator`'s fast paths: `--generation_sampler`,
`--generation_sort_prompts`, `--generation_share_prompt_prefix` and `--generation_bucket_prefill`."""

from __future__ import annotations

import inspect

import pytest

from hf_active_synth.generators.endpoint import EndpointTextGenerator
from hf_active_synth.generators.text import PromptTemplates, TextGenerationGenerator
from hf_active_synth.recipes.parsing import parse_args_and_config
from hf_active_synth.recipes.text_classification import TextScriptArguments, make_parser
from hf_active_synth.recipes.text_generation import make_text_generator

# Recipe option -> the generator argument it sets, and a value other than the default.
OPTIONS = {
    "generation_sampler": ("sampler", "transformers"),
    "generation_sort_prompts": ("sort_prompts", False),
    "generation_share_prompt_prefix": ("share_prompt_prefix", False),
    "generation_bucket_prefill": ("bucket_prefill", False),
}


def parse(tmp_path, *flags):
    """The recipe's script arguments; a generator path, so that no shipped model is looked for (none is loaded)."""
    flags = [*flags, "--generator_name_or_path", str(tmp_path / "model"), "--output_dir", str(tmp_path)]
    return parse_args_and_config(make_parser(), flags)[0]


def build(script_args, tmp_path):
    return make_text_generator(
        script_args, tmp_path, PromptTemplates(domain="movie review"), None, show_progress=False
    )


def test_defaults_are_the_generators_defaults(tmp_path):
    parameters = inspect.signature(TextGenerationGenerator.__init__).parameters
    script_args = parse(tmp_path)
    generator = build(script_args, tmp_path)  # nothing is loaded: the constructor stores its arguments only
    assert isinstance(generator, TextGenerationGenerator)
    for option, (argument, _) in OPTIONS.items():
        assert getattr(script_args, option) == parameters[argument].default, option
        assert getattr(generator, argument) == parameters[argument].default, option


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_reaches_the_generator(tmp_path, option):
    argument, value = OPTIONS[option]
    script_args = parse(tmp_path, "--" + option, str(value).lower())
    generator = build(script_args, tmp_path)
    assert getattr(generator, argument) == value
    for other, (other_argument, _) in OPTIONS.items():  # the others keep their defaults
        if other != option:
            assert getattr(generator, other_argument) == getattr(TextScriptArguments(), other), other


def test_no_prefix_flags_and_bad_sampler(tmp_path):
    flags = ["--no_generation_sort_prompts", "--no_generation_share_prompt_prefix", "--no_generation_bucket_prefill"]
    script_args = parse(tmp_path, *flags)
    generator = build(script_args, tmp_path)
    assert not (generator.sort_prompts or generator.share_prompt_prefix or generator.bucket_prefill)
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        parse(tmp_path, "--generation_sampler", "vllm")
    with pytest.raises(ValueError, match="--generation_sampler must be one of"):  # from Python or a YAML file
        build(TextScriptArguments(generator_name_or_path="model", generation_sampler="vllm"), tmp_path)


def test_an_endpoint_generator_ignores_them(tmp_path):
    args = TextScriptArguments(
        generator_endpoint="http://127.0.0.1:9", generator_model="m", generation_sampler="transformers"
    )
    assert isinstance(build(args, tmp_path), EndpointTextGenerator)


def test_help_lists_the_options():
    help_text = make_parser().format_help()  # raises on a help string argparse cannot format (a bare %)
    for option in OPTIONS:
        assert "--" + option in help_text, option
    assert "{seeded,transformers}" in help_text


def test_label_probability_floor_option(tmp_path):
    """`--min_label_probability` adds the label-probability floor after label agreement; bad values are refused."""
    from hf_active_synth.filters import LabelAgreementFilter, LabelProbabilityFloorFilter
    from hf_active_synth.recipes.text_classification import make_filters

    assert not any(isinstance(f, LabelProbabilityFloorFilter) for f in make_filters(parse(tmp_path)))
    filters = make_filters(parse(tmp_path, "--min_label_probability", "0.6"))
    kinds = [type(f) for f in filters]
    assert kinds.index(LabelProbabilityFloorFilter) == kinds.index(LabelAgreementFilter) + 1
    floor = filters[kinds.index(LabelProbabilityFloorFilter)]
    assert floor.min_probability == pytest.approx(0.6)
    with pytest.raises(ValueError, match="--min_label_probability"):
        TextScriptArguments(generator_name_or_path="model", min_label_probability=1.5)
