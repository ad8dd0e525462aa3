"""Test doubles and tiny models for the image tests: an ensemble of linear pixel classifiers, tiny pipelines."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from hf_active_synth.generators.diffusion_pipeline import ClassConditionalImagePipeline


class LinearPixelEnsemble:
    """K linear classifiers over the pixels of `pixel_values`, each fitted on its own bootstrap sample.

    Implements the estimator surface guided diffusion uses: `num_members` and a differentiable
    `member_logits(inputs) -> [B, C, K]`. Unfitted, the members are differently seeded random projections.
    """

    def __init__(self, num_members: int = 4, num_labels: int = 10, num_pixels: int = 64, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.num_members = num_members
        self.weight = torch.randn(num_members, num_pixels, num_labels, generator=generator) * 0.3
        self.bias = torch.zeros(num_members, num_labels)
        self.seed = seed

    def fit(self, pixel_values: torch.Tensor, labels: torch.Tensor, steps: int = 150, lr: float = 0.5):
        """Full-batch gradient descent per member on a bootstrap resample (seeded). Returns `self`."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        features = pixel_values.flatten(1)
        for member in range(self.num_members):
            rows = torch.randint(len(labels), (len(labels),), generator=generator)
            weight = self.weight[member].clone().requires_grad_(True)
            bias = self.bias[member].clone().requires_grad_(True)
            optimizer = torch.optim.SGD([weight, bias], lr=lr)
            for _ in range(steps):
                loss = torch.nn.functional.cross_entropy(features[rows] @ weight + bias, labels[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            self.weight[member], self.bias[member] = weight.detach(), bias.detach()
        return self

    def member_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        features = inputs["pixel_values"].flatten(1)
        logits = torch.einsum("bp,kpc->bck", features, self.weight) + self.bias.T[None]
        return logits


def tiny_class_conditional_pipeline(seed: int = 0, num_labels: int = 10) -> ClassConditionalImagePipeline:
    """An untrained 8x8 grayscale class-conditional UNet2DModel (block_out_channels (4, 8)) with DDIM."""
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=num_labels,
    )
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    return ClassConditionalImagePipeline(unet=unet.eval(), scheduler=scheduler)


def tiny_clip_tokenizer(model_max_length: int = 16) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single characters (no merges), built in memory."""
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in characters:
        vocab[character] = len(vocab)
        vocab[character + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_stable_diffusion_components(seed: int = 0) -> dict:
    """Random tiny Stable Diffusion components: 8x8 latents (4 channels), 16x16 RGB images."""
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(4, 8),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer.get_vocab()),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def tiny_stable_diffusion(seed: int = 0, img2img: bool = False):
    """A tiny random `StableDiffusionPipeline` (or `StableDiffusionImg2ImgPipeline`)."""
    cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
    return cls(**tiny_stable_diffusion_components(seed))


class ModelEnsemble:
    """Deep-ensemble test double: K classifiers whose logits are stacked to `[B, C, K]` (differentiable)."""

    def __init__(self, models: list[torch.nn.Module]):
        self.models = models
        self.num_members = len(models)

    def member_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([model(**inputs).logits for model in self.models], dim=-1)


def train_classifier(model: torch.nn.Module, pixel_values, labels, epochs: int = 10, seed: int = 0, lr: float = 3e-3):
    """A few epochs of AdamW on in-memory tensors (seeded shuffles); returns the model in eval mode, frozen."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), 32):
            rows = order[start : start + 32]
            loss = model(pixel_values=pixel_values[rows], labels=labels[rows]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval().requires_grad_(False)
