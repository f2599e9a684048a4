"""Adapters that expose DeScore to diffusion post-training loops; installed as `descore_reward.integrations`."""
