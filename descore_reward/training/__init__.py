"""The two DeScore training stages: discriminative cold start (`cold_start`) and dual-objective RL."""
