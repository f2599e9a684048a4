"""One scored sequence, `[chat(video, prompt) ; cot ; <reward>]`, built in one place
(`DeScoreModel.scored_sequences`) and proved here: stage 1 and `forward`, fast and think mode (the KV-cache
step), stage 2's token-id rollouts and their CoT-masked twins all give the reward of the same plain
forward, put together by hand."""

import torch

from descore_reward.modeling import fill_temporal_patch
from descore_reward.synthetic import make_dataset
from descore_reward.training.rl import RLConfig
from descore_reward.training.rollouts import logprobs_and_rewards, masked_rewards, rollouts_from_texts

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
        _, token_rewards = logprobs_and_rewards(tiny_model, rollouts)
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
        _, token_rewards = logprobs_and_rewards(model, rollouts)
        videos = [p.video_a for p in pairs for _ in range(2)] + [p.video_b for p in pairs for _ in range(2)]
        text_rewards = model(videos, [p.prompt for p in pairs for _ in range(2)] * 2, texts)
        masked = masked_rewards(model, rollouts, config.group_size)
    torch.testing.assert_close(token_rewards, text_rewards, rtol=0, atol=TOLERANCE)
    fast = model.score([p.video_a for p in pairs] + [p.video_b for p in pairs], [p.prompt for p in pairs] * 2, False)
    torch.testing.assert_close(masked, torch.tensor([r.reward for r in fast]), rtol=0, atol=TOLERANCE)
    think = model.score(videos[:1], [pairs[0].prompt], max_new_tokens=4)
    assert think[0].cot is not None


def plain_reward(model, video, prompt: str, cot_ids: list[int]) -> float:
    """The reference: one video's `[chat(video, prompt) ; cot ; <reward>]` put together by hand from the
    processor's prompt tokens (no padding, no masking, no cache, none of the model's sequence code),
    one forward, the head at the last position."""
    inputs = model.prepare_inputs([video], [prompt])
    tail = torch.tensor([*cot_ids, model.reward_token_id])[None]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(tail)], dim=1)
    with torch.no_grad():
        return model.head(model.language_backbone(**inputs).last_hidden_state[:, -1].float()).item()


def test_every_path_gives_the_plain_forwards_reward(tiny_model, tmp_path):
    """Think mode (generation, then the KV-cache step), fast mode, stage 1 with and without CoT (batched,
    left-padded prompts, CoTs of unequal length), stage 2's rollouts (end-of-sequence and padding masked)
    and their CoT-masked twins: each reward is the plain forward's."""
    model, tokenizer = tiny_model, tiny_model.processor.tokenizer
    pairs = pairs_of(tmp_path)
    videos = [p.video_a for p in pairs] + [p.video_b for p in pairs]
    prompts = [p.prompt for p in pairs] * 2

    def expected(rows_videos, rows_prompts, cot_ids):
        return torch.tensor([plain_reward(model, v, p, ids) for v, p, ids in zip(rows_videos, rows_prompts, cot_ids)])

    cots = ["The square is red and moves right.", None, "Blue.", "A circle, standing still, on grey."]
    cot_ids = [tokenizer(c, add_special_tokens=False).input_ids if c else [] for c in cots]
    with torch.no_grad():
        stage_one = model(videos, prompts, cots)
    torch.testing.assert_close(stage_one, expected(videos, prompts, cot_ids), rtol=0, atol=TOLERANCE)
    fast = torch.tensor([r.reward for r in model.score(videos, prompts, think=False, batch_size=3)])
    torch.testing.assert_close(fast, expected(videos, prompts, [[]] * 4), rtol=0, atol=TOLERANCE)

    with torch.no_grad():
        inputs = model.prepare_inputs(videos, prompts)
        eos = tokenizer.convert_tokens_to_ids(",")  # a common token, so that some rows end early
        generated, cot_length, cache = model.generate_cots(inputs, max_new_tokens=8, do_sample=False, eos_token_id=eos)
        think = model.reward_after_generation(inputs, generated, cot_length, cache)
    written = [generated[row, :n].tolist() for row, n in enumerate(cot_length.tolist())]
    torch.testing.assert_close(think, expected(videos, prompts, written), rtol=0, atol=TOLERANCE)
    scored = model.score(videos, prompts, max_new_tokens=8, generation_kwargs={"eos_token_id": eos})
    torch.testing.assert_close(torch.tensor([r.reward for r in scored]), think, rtol=0, atol=TOLERANCE)

    config = stage2_config(tmp_path)
    texts = ["Red.", "The square is red.", "Blue, not red.", "", "Still.", "It moves up.", "Green.", "A square."]
    rollouts = rollouts_from_texts(model, pairs, texts, config)
    with torch.no_grad():
        _, rollout_rewards = logprobs_and_rewards(model, rollouts)
        masked = masked_rewards(model, rollouts, config.group_size)
    row_videos, row_prompts = [v for v in videos for _ in range(2)], [p for p in prompts for _ in range(2)]
    text_ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    torch.testing.assert_close(rollout_rewards, expected(row_videos, row_prompts, text_ids), rtol=0, atol=TOLERANCE)
    torch.testing.assert_close(masked, expected(videos, prompts, [[]] * 4), rtol=0, atol=TOLERANCE)


def test_tokenising_the_cot_on_its_own_scores_as_the_whole_text_did(tiny_model):
    """Stage 1 and `forward` used to tokenise `chat(video, prompt) + cot + <reward>` as one string; they
    now tokenise the CoT on its own. For CoTs as a teacher writes them (starting with a word) both give
    the same tokens, so the same rewards: the rewards of models trained before the change are kept."""
    model = tiny_model
    videos = [torch.rand(8, 48, 64, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    prompts = ["a red square moves right", "a blue circle", "a green square moves up on a grey background"]
    cots = ["The square is red and moves right.", None, "Subject: a square.\n<answer>{}</answer>"]
    with torch.no_grad():
        new = model(videos, prompts, cots)
        old = []
        for video, prompt, cot in zip(videos, prompts, cots):
            text = model.chat_prefix(prompt) + (cot or "") + model.config.reward_token
            video = fill_temporal_patch(model.load_videos([video])[0], model.processor)
            sampling = model.config.sampling
            inputs = model.processor(
                text=[text],
                videos=[video.frames],
                video_metadata=[video.metadata],
                do_sample_frames=False,
                cap_pixels_per_frame=True,
                size={"shortest_edge": sampling.min_pixels_per_frame, "longest_edge": sampling.max_total_pixels},
                return_tensors="pt",
            )
            hidden = model.language_backbone(**inputs).last_hidden_state[:, -1]
            old.append(model.head(hidden.float()).item())
    torch.testing.assert_close(new, torch.tensor(old), rtol=0, atol=TOLERANCE)
