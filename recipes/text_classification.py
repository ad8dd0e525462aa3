"""Active synthesis for text classification: an LLM writes new examples where the classifier's ensemble disagrees.

Usage (offline default: SST-2 from ../shared/data/sst2, 64 labelled sentences, MiniLM-L6 + a LoRA ensemble,
SmolLM2-135M-Instruct GGUF as the generator, 2 cycles of 32 accepted sentences):

    accelerate launch recipes/text_classification.py --config recipes/configs/sst2.yaml
    python recipes/text_classification.py --config recipes/configs/sst2.yaml --num_cycles 3
    # 2 CPU processes (`--cpu --num_processes 2` starts only one with Accelerate 1.x: see recipes/README.md)
    accelerate launch --config_file recipes/accelerate_configs/cpu_2proc.yaml recipes/text_classification.py \
        --config recipes/configs/sst2.yaml

Compare real-only, random synthetic, BALD active learning and active synthesis over 3 seeds:

    python recipes/text_classification.py --config recipes/configs/sst2.yaml --compare true \
        --output_dir runs/sst2-compare

Online, with any Hub classifier and instruct LLM:

    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/text_classification.py \
        --dataset_name stanfordnlp/sst2 --model_name_or_path <encoder> \
        --generator_name_or_path <instruct LLM> --generator_dtype bfloat16 --output_dir runs/my-text
"""

from hf_active_synth.recipes.text_classification import (  # noqa: F401  (the recipe's public pieces)
    TextModelArguments,
    TextScriptArguments,
    cli,
    main,
    make_parser,
)

if __name__ == "__main__":
    cli()
