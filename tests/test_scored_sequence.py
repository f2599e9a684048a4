"""One scored sequence, `[chat(video, prompt) ; cot ; <reward>]`, whichever path builds it: the text
path (stage 1, `score`, `forward`), stage 2's token-id sequences (rollouts and their CoT-masked
twins) and the KV-cache step of think mode all give the reward of the same plain forward."""

import torch

from descore_reward.synthetic import make_dataset
from descore_reward.training.rl import RLConfig, masked_rewards, rollouts_from_texts, sequence_logprobs_and_rewards

TOLERANCE = 1e-5


def stage2_config(tmp_path, group_size=2):
    return RLConfig(
        model="unused", train_data="unused", output_dir=str(tmp_path), group_size=group_size, report_to=None
    )


def pairs_of(tmp_path, count=2):
    from descore_reward.data import read_jsonl

    return read_jsonl(make_dataset(tmp_path / "data", count, seed=0))[:count]


def test_stage_two_masked_rewards_equal_fast_mode_scores(tiny_model, tmp_path):
    """The CoT-masked BT term scores `[video ; prompt ; <reward>]`, what `score(think=False)` scores."""
    pairs = pairs_of(tmp_path)
    config = stage2_config(tmp_path)
    texts = ["a short look at the video"] * (2 * len(pairs) * config.group_size)
    rollouts = rollouts_from_texts(tiny_model, pairs, texts, config)
    with torch.no_grad():
        masked = masked_rewards(tiny_model, rollouts, config.group_size)
    videos = [p.video_a for p in pairs] + [p.video_b for p in pairs]
    fast = tiny_model.score(videos, [p.prompt for p in pairs] * 2, think=False)
    torch.testing.assert_close(masked, torch.tensor([r.reward for r in fast]), rtol=0, atol=TOLERANCE)
    assert (rollouts.sequence["input_ids"] == tiny_model.reward_token_id).sum() == len(texts)


def test_stage_two_token_sequences_equal_the_text_path(tiny_model, tmp_path):
    """Rollouts built from token ids (CoTs of unequal lengths, end-of-sequence and padding masked out)
    give the rewards of the text path that stage 1 and `forward` use for the same CoT text."""
    pairs = pairs_of(tmp_path)
    config = stage2_config(tmp_path)
    texts = [
        "The square is red and moves right.",
        "Red.",
        "The colour is wrong: it is blue.",
        "A circle, standing still, against a dark background.",
        "Nothing moves.",
        "The subject is a green square going up, as the prompt asks.",
        "Yes.",
        "It is a square.",
    ]
    rollouts = rollouts_from_texts(tiny_model, pairs, texts, config)
    with torch.no_grad():
        _, token_rewards = sequence_logprobs_and_rewards(tiny_model, rollouts)
        videos = [p.video_a for p in pairs for _ in range(2)] + [p.video_b for p in pairs for _ in range(2)]
        prompts = [p.prompt for p in pairs for _ in range(2)] * 2
        text_rewards = tiny_model(videos, prompts, texts)
    torch.testing.assert_close(token_rewards, text_rewards, rtol=0, atol=TOLERANCE)


def test_a_video_marker_in_the_instruction_places_the_video_there_on_every_path(make_model, tmp_path):
    """The authors' stage-2 and inference wording puts the video at `<video>` after the prompt: the
    chat text holds the vision tokens there and no literal marker, and stage 2's token-id sequences
    still equal the text path."""
    template = 'Prompt: "{prompt}"\n**Video**: <video>\nJudge the video, then answer.'
    model = make_model(instruction_template=template)
    prefix = model.chat_prefix("a red square")
    assert "<video>" not in prefix
    vision = prefix.index("<|vision_start|>")
    assert prefix.index('Prompt: "a red square"') < vision < prefix.index("Judge the video")
    default = make_model().chat_prefix("a red square")
    assert default.index("<|vision_start|>") < default.index("a red square"), "no marker: the video comes first"

    pairs = pairs_of(tmp_path)
    config = stage2_config(tmp_path)
    texts = ["It is red.", "Red, moving right.", "Blue.", "A circle."] * 2
    rollouts = rollouts_from_texts(model, pairs, texts, config)
    with torch.no_grad():
        _, token_rewards = sequence_logprobs_and_rewards(model, rollouts)
        videos = [p.video_a for p in pairs for _ in range(2)] + [p.video_b for p in pairs for _ in range(2)]
        text_rewards = model(videos, [p.prompt for p in pairs for _ in range(2)] * 2, texts)
        masked = masked_rewards(model, rollouts, config.group_size)
    torch.testing.assert_close(token_rewards, text_rewards, rtol=0, atol=TOLERANCE)
    fast = model.score([p.video_a for p in pairs] + [p.video_b for p in pairs], [p.prompt for p in pairs] * 2, False)
    torch.testing.assert_close(masked, torch.tensor([r.reward for r in fast]), rtol=0, atol=TOLERANCE)
    think = model.score(videos[:1], [pairs[0].prompt], max_new_tokens=4)
    assert think[0].cot is not None
