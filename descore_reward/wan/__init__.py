"""Post-training Wan-2.1 (diffusers' `WanPipeline`) with DeScore: this library's own trainers and their parts.

- `flow_dpo`: DeScore-labelled best-vs-worst pairs (`rank_dpo_pairs`) and Flow-DPO training;
- `grpo`: GRPO with an SDE sampler whose steps have log-probabilities, DeScore as the reward;
- `generation`: VBench's prompt suite rendered to MP4 files, optionally best-of-N by a reward;
- `lora`, `vae`: the LoRA on the transformer the trainers share, VAE latents and their cache.
"""
