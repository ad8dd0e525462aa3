"""Active synthesis for image classification: diffusion sampling guided by ensemble disagreement.

Usage (offline default: scikit-learn digits, 10 labelled images per class, a DDPM trained on them, 3 cycles):

    accelerate launch recipes/image_classification.py --config recipes/configs/digits.yaml
    python recipes/image_classification.py --output_dir runs/digits --num_cycles 3
    # 2 CPU processes (`--cpu --num_processes 2` starts only one with Accelerate 1.x: see recipes/README.md)
    accelerate launch --config_file recipes/accelerate_configs/cpu_2proc.yaml recipes/image_classification.py \
        --config recipes/configs/digits.yaml

Compare real-only, random synthetic, BALD active learning and active synthesis over 3 seeds (report.md + plots):

    python recipes/image_classification.py --config recipes/configs/digits.yaml --compare true \
        --output_dir runs/digits-compare

With hardware and network, any image-classification dataset, classifier and Stable Diffusion checkpoint:

    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/image_classification.py \
        --dataset_name <hub id or imagefolder path> --model_name_or_path <image classifier> \
        --pipeline_name_or_path <stable diffusion checkpoint> --prompt_template "a photo of a {label_name}" \
        --strength 0.6 --output_dir runs/my-images --push_cycles_to_hub true --hub_model_id <user/model> \
        --hub_dataset_id <user/synthetic-data>
"""

from hf_active_synth.recipes.image_classification import (  # noqa: F401  (the recipe's public pieces)
    ImageModelArguments,
    ImageScriptArguments,
    cli,
    main,
    make_parser,
)

if __name__ == "__main__":
    cli()
