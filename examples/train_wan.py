"""Post-train Wan-2.1 with DeScore: Flow-DPO on DeScore-labelled pairs, or Longcat-style GRPO with DeScore
as the reward. LoRA on the transformer; one process or many (`accelerate launch`); rerunning the same
command resumes from the last checkpoint in `output_dir/lora`, which `WanPipeline.load_lora_weights` loads.

    accelerate launch examples/train_wan.py flow-dpo --config examples/configs/flow_dpo_wan_1_3b.yaml [key=value ...]
    accelerate launch examples/train_wan.py grpo --config examples/configs/longcat_grpo_wan_1_3b.yaml \\
        --descore path/to/descore --prompts prompts.txt [--think] [key=value ...]

`key=value` overrides any config key; unknown keys are an error.
"""

import argparse
import json
from pathlib import Path

from descore_reward.integrations.flow_dpo import FlowDPOConfig, train_flow_dpo
from descore_reward.integrations.longcat_grpo import LongcatGRPOConfig, train_longcat_grpo
from descore_reward.training.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = parser.add_subparsers(dest="method", required=True)
    dpo = methods.add_parser("flow-dpo", help="Flow-DPO on a pairs JSONL (examples/rank_dpo_pairs.py writes one)")
    grpo = methods.add_parser("grpo", help="Longcat-style GRPO with DeScore as the reward")
    for method in (dpo, grpo):
        method.add_argument("--config", required=True, help="YAML config")
        method.add_argument("overrides", nargs="*", help="key=value overrides")
    grpo.add_argument("--descore", required=True, help="DeScore checkpoint directory or id")
    grpo.add_argument("--prompts", help="text file, one prompt per line (instead of the config's prompts)")
    grpo.add_argument("--think", action="store_true", help="score think-then-score (slower)")
    args = parser.parse_args()
    if args.method == "flow-dpo":
        state = train_flow_dpo(load_config(FlowDPOConfig, args.config, args.overrides))
        print(f"flow-dpo: {state['step']} steps, last loss {state['losses'][-1]:.4f}")
        return
    overrides = list(args.overrides)
    if args.prompts:
        prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
        overrides.append(f"prompts={json.dumps(prompts)}")
    config = load_config(LongcatGRPOConfig, args.config, overrides)
    if not config.prompts:
        parser.error(f"{args.config}: no prompts; give them in the config or with --prompts FILE")
    from accelerate import PartialState

    from descore_reward import DeScoreReward

    reward_fn = DeScoreReward(args.descore, think=args.think, device=PartialState().device)
    state = train_longcat_grpo(config, reward_fn)
    print(f"grpo: {state['step']} steps, last mean reward {state['rewards'][-1]:.4f}")


if __name__ == "__main__":
    main()
