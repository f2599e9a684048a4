"""Post-train Wan-2.1 with DeScore: Flow-DPO on DeScore-labelled pairs, or Longcat-style GRPO with DeScore
as the reward. LoRA on the transformer; one process or many (`accelerate launch`); rerunning the same
command resumes from the newest checkpoint in `output_dir`. The trained LoRA is written to
`output_dir/lora`, which `WanPipeline.load_lora_weights` loads.

    accelerate launch examples/train_wan.py flow-dpo --config examples/configs/flow_dpo_wan_1_3b.yaml [key=value ...]
    accelerate launch examples/train_wan.py grpo --config examples/configs/longcat_grpo_wan_1_3b.yaml \\
        --prompts prompts.txt reward_model=path/to/descore [reward_think=true] [key=value ...]

`key=value` overrides any config key; unknown keys are an error.
"""

import argparse
import json
from pathlib import Path

from descore_reward.config import load_config
from descore_reward.integrations import flow_dpo, longcat_grpo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = parser.add_subparsers(dest="method", required=True)
    dpo = methods.add_parser("flow-dpo", help="Flow-DPO on a pairs JSONL (examples/rank_dpo_pairs.py writes one)")
    grpo = methods.add_parser("grpo", help="Longcat-style GRPO with DeScore as the reward")
    for method in (dpo, grpo):
        method.add_argument("--config", required=True, help="YAML config")
        method.add_argument("overrides", nargs="*", help="key=value overrides")
    grpo.add_argument("--prompts", help="text file, one prompt per line (instead of the config's prompts)")
    args = parser.parse_args()
    if args.method == "flow-dpo":
        state = flow_dpo.train(load_config(flow_dpo.FlowDPOConfig, args.config, args.overrides))
        print(f"flow-dpo: {state['step']} steps, last loss {state['losses'][-1]:.4f}")
        return
    overrides = list(args.overrides)
    if args.prompts:
        prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
        overrides.append(f"prompts={json.dumps(prompts)}")
    config = load_config(longcat_grpo.LongcatGRPOConfig, args.config, overrides)
    if not config.prompts:
        parser.error(f"{args.config}: no prompts; give them in the config or with --prompts FILE")
    if not config.reward_model:
        parser.error(f"{args.config}: no reward_model; give a DeScore checkpoint as reward_model=PATH")
    state = longcat_grpo.train(config)
    print(f"grpo: {state['step']} steps, last mean reward {state['rewards'][-1]:.4f}")


if __name__ == "__main__":
    main()
