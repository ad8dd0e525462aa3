"""The `hf-active-synth` command.

    hf-active-synth run CONFIG.yaml [--arg value ...]       run a recipe; CONFIG names it with `recipe: image|text`
    hf-active-synth compare CONFIG.yaml [--arg value ...]   every baseline + active synthesis over seeds, report.md
    hf-active-synth report OUTPUT_DIR                        print a finished run's (or comparison's) tables, plots

Recipes can also be launched directly, under Accelerate: `accelerate launch recipes/image_classification.py ...`.
An expected error (a bad option, config or folder) prints one line, `error: <message>`, and exits with status 2;
`--traceback` (after the command) shows its full traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from transformers.hf_argparser import string_to_bool

from .cycle import HISTORY_FILE
from .evaluation.analysis import load_history
from .evaluation.compare import collect_runs, write_comparison_report
from .evaluation.report import build_report, render_results_table
from .recipes.parsing import read_yaml_config
from .recipes.running import command_line_errors


def _recipes() -> dict[str, Callable[[list[str]], object]]:
    # Imported lazily: each recipe pulls in its generator stack (diffusers or an LLM).
    def image(args: list[str]) -> object:
        from .recipes.image_classification import cli

        return cli(args)

    def text(args: list[str]) -> object:
        from .recipes.text_classification import cli

        return cli(args)

    return {"image": image, "image_classification": image, "text": text, "text_classification": text}


def _run(config_path: str, extra: list[str], compare: bool) -> None:
    values = read_yaml_config(config_path)
    recipes = _recipes()
    recipe = values.get("recipe")
    if recipe not in recipes:
        raise ValueError(
            f"{config_path} must name its recipe with `recipe: image` or `recipe: text` (got {recipe!r})."
        )
    args = ["--config", config_path, *extra]
    if compare:
        args += ["--compare", "true"]
    recipes[recipe](args)


def _report(output_dir: str) -> None:
    root = Path(output_dir)
    if (root / HISTORY_FILE).is_file():
        results = {"active_synthesis": [load_history(root)]}
        print(render_results_table(results, None))
        report = build_report(results, root / "report", run_dir=root)
    else:
        results, entries = collect_runs(root)
        if not results:
            raise FileNotFoundError(
                f"No history.json in {root} nor finished runs in {root}/<method>/split-<k>/seed-<s>/: is it a "
                "finished run or comparison?"
            )
        print(render_results_table(results, entries))
        report = write_comparison_report(root)
    print(f"\nReport and plots written to {report.parent}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hf-active-synth", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "Run a recipe from a YAML config."), ("compare", "Compare every method.")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("config", help="YAML config with a `recipe:` key (image or text).")
        _add_traceback_flag(command)
    report = commands.add_parser("report", help="Tables and plots of a finished run or comparison.")
    report.add_argument("output_dir")
    _add_traceback_flag(report)
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    with command_line_errors(args.traceback):
        if args.command == "report":
            if extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            _report(args.output_dir)
        else:
            # The recipe turns its own errors into one line too; it needs to hear `--traceback` as well.
            _run(
                args.config, [*extra, *(["--traceback", "true"] if args.traceback else [])], args.command == "compare"
            )


def _add_traceback_flag(command: argparse.ArgumentParser) -> None:
    # Bare or with a value, as the recipes read it (`--traceback`, `--traceback true`).
    command.add_argument(
        "--traceback",
        type=string_to_bool,
        nargs="?",
        const=True,
        default=False,
        help="Show the full traceback of an error instead of one line.",
    )


if __name__ == "__main__":
    main()
