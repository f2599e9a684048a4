# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DeScore on VBench: the paper's Wan-2.1-1.3B comparison
#
# The paper post-trains Wan-2.1-T2V-1.3B with DeScore as the reward (GRPO) or the labeller (Flow-DPO)
# and reports five VBench dimensions. This notebook reads one VBench results file per run,
# `{name}_eval_results.json` (written by `examples/vbench/evaluate.py`, or by `descore quick-look`),
# from the folder `VBENCH_RESULTS` (default `runs/vbench/results`), and shows:
#
# 1. each run's scores beside the paper's;
# 2. each run's gain over the baseline with a 95% paired bootstrap interval: prompts are resampled
#    (a prompt's five videos are not independent draws), and a gain whose interval holds 0 is
#    inside the noise. Dynamic degree is a yes/no per video: at 72 prompts x 5 videos one run's score
#    is known to about +-0.05 and a gain to about +-0.07 (where the two runs' videos vary
#    independently), wider than the paper's dynamic-degree gains (+0.014, +0.015);
# 3. the gains as a bar chart, the paper's as black ticks.
#
# It writes `comparison.json`, `comparison.md` and `comparison.png` beside the results.

# %%
import json
import os
from pathlib import Path

from IPython.display import Image, Markdown, display

from descore_reward.atomic import atomic_write_text
from descore_reward.plots import plot_gains
from descore_reward.vbench import results as vbench

RESULTS = Path(os.environ.get("VBENCH_RESULTS", "runs/vbench/results"))
RUNS = ("baseline", "grpo", "flow_dpo", "best_of_4")  # the rows, where their results exist
RESAMPLES = 10_000

runs = {}
for name in RUNS:
    path = vbench.results_path(RESULTS, name)
    if path.exists():
        runs[name] = vbench.read_results(path, name)
print(f"{RESULTS}: runs {sorted(runs)}")

# %% [markdown]
# ## Scores beside the paper's, and gains over the baseline

# %%
comparison = vbench.compare(runs, baseline="baseline", resamples=RESAMPLES)
table = vbench.comparison_markdown(comparison)
display(Markdown(table))

# %% [markdown]
# ## Which gains are inside the noise

# %%
for name, row in comparison["runs"].items():
    for dimension, cell in row.items():
        if "gain" in cell:
            verdict = "inside the noise" if cell["inside_noise"] else "outside the noise"
            print(
                f"{name:>10} {dimension:<23} {cell['gain']:+.4f} "
                f"[{cell['low']:+.4f}, {cell['high']:+.4f}] over {cell['prompts']} prompts: {verdict}"
            )

# %%
plot_gains(comparison, RESULTS / "comparison.png", "Wan-2.1-T2V-1.3B on VBench: gains over the baseline")
atomic_write_text(RESULTS / "comparison.json", json.dumps(comparison, indent=2))
atomic_write_text(RESULTS / "comparison.md", table)
display(Image(filename=str(RESULTS / "comparison.png")))
