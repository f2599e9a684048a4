"""The think-then-score model on a tiny random Qwen3-VL: shapes, gradients, KV-cache scoring,
padding, save/load, and input checks."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from descore_reward.generation import PrivateSampler
from descore_reward.modeling import DeScoreModel
from descore_reward.video import VideoInputError

PROMPTS = ["a red square moves right", "a blue circle stays still on a grey background, the camera stays still"]


def two_videos():
    """Two in-memory videos of different lengths and sizes, so that batching needs real padding."""
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8, generator=generator),
        torch.rand(8, 48, 80, 3, generator=generator),
    ]


def full_forward_reward(model, video, prompt, cot_ids):
    """Reference: one forward over `[prompt ; cot ; <reward>]` of one video, built from token ids by hand
    (no padding, no cache, none of the model's sequence code), the head at the last position."""
    inputs = model.prepare_inputs([video], [prompt])
    tail = torch.cat([cot_ids, torch.tensor([model.reward_token_id])])[None]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(tail)], dim=1)
    with torch.no_grad():
        return model.head(model.language_backbone(**inputs).last_hidden_state[:, -1].float()).item()


def test_forward_gives_one_reward_per_video_with_gradients(make_model):
    model = make_model()
    rewards = model(two_videos(), PROMPTS, cots=["The square moves right.", None])
    assert rewards.shape == (2,) and rewards.dtype == torch.float32 and torch.isfinite(rewards).all()
    rewards.sum().backward()
    assert model.reward_embedding.grad is not None and model.reward_embedding.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.head.parameters())
    layer = model.language_backbone.language_model.layers[0].self_attn.q_proj.weight
    assert layer.grad is not None and layer.grad.abs().sum() > 0


def test_cot_changes_the_reward(tiny_model):
    videos = two_videos()[:1]
    with torch.no_grad():
        without = tiny_model(videos, PROMPTS[:1]).item()
        with_cot = tiny_model(videos, PROMPTS[:1], cots=["The square is red and it moves right."]).item()
    assert without != pytest.approx(with_cot, abs=1e-6)


def test_kv_cache_scoring_equals_a_full_forward(tiny_model):
    videos = two_videos()
    inputs = tiny_model.prepare_inputs(videos, PROMPTS)

    def sampling():  # what `score(do_sample=True, temperature=2.0, seed=0)` passes to `generate`
        return dict(max_new_tokens=10, do_sample=False, logits_processor=[PrivateSampler(2.0, seed=0)])

    generated, _, _ = tiny_model.generate_cots(inputs, **sampling())
    # Make row 0 stop early: one of its tokens that row 1 never writes becomes end-of-sequence.
    row0, row1 = generated[0].tolist(), generated[1].tolist()
    stop = next(j for j in range(1, 9) if row0[j] not in row1 and row0[j] not in row0[:j])
    generated, cot_length, cache = tiny_model.generate_cots(inputs, **sampling(), eos_token_id=row0[stop])
    assert cot_length.tolist() == [stop, 10]
    with torch.no_grad():
        cached = tiny_model.reward_after_generation(inputs, generated, cot_length, cache)
    for row in range(2):
        reference = full_forward_reward(tiny_model, videos[row], PROMPTS[row], generated[row, : cot_length[row]])
        assert cached[row].item() == pytest.approx(reference, abs=1e-4)
    results = tiny_model.score(
        videos,
        PROMPTS,
        think=True,
        seed=0,
        generation_kwargs=dict(eos_token_id=row0[stop]),
        do_sample=True,
        temperature=2.0,
        max_new_tokens=10,
    )
    assert [r.reward for r in results] == pytest.approx(cached.tolist(), abs=1e-5)


def test_batch_equals_each_video_alone(tiny_model):
    videos = two_videos()
    for think in (False, True):
        batched = tiny_model.score(videos, PROMPTS, think=think, max_new_tokens=6)
        alone = [tiny_model.score([v], [p], think=think, max_new_tokens=6)[0] for v, p in zip(videos, PROMPTS)]
        assert [r.reward for r in batched] == pytest.approx([r.reward for r in alone], abs=1e-4)
        assert [r.cot for r in batched] == [r.cot for r in alone]


def test_think_and_fast_results(tiny_model):
    thought = tiny_model.score(two_videos(), PROMPTS, think=True, max_new_tokens=5)
    fast = tiny_model.score(two_videos(), PROMPTS, think=False)
    assert all(isinstance(r.cot, str) and r.cot for r in thought)
    assert all(r.cot is None and r.scores is None for r in fast)
    assert all(r.video == f"videos[{i}]" for i, r in enumerate(fast))


def test_sampled_thinking_is_reproducible_with_a_seed(tiny_model):
    kwargs = dict(think=True, max_new_tokens=8, do_sample=True, temperature=1.5, seed=3)
    first = tiny_model.score(two_videos(), PROMPTS, **kwargs)
    second = tiny_model.score(two_videos(), PROMPTS, **kwargs)
    assert [r.cot for r in first] == [r.cot for r in second]


def test_compare_with_ties(make_model):
    model = make_model(tie_theta=5.0)
    comparison = model.compare(two_videos()[0], two_videos()[1], PROMPTS[0], think=False)
    assert comparison.margin == pytest.approx(comparison.a.reward - comparison.b.reward)
    total = comparison.p_a_better + comparison.p_tie + comparison.p_b_better
    assert total == pytest.approx(1.0, abs=1e-6) and comparison.p_tie > 0


def test_save_and_load_round_trip(make_model, tmp_path):
    model = make_model(seed=1)
    with torch.no_grad():
        model.reward_embedding.add_(0.25)
        model.head.layers.weight.mul_(2.0)
    before = [r.reward for r in model.score(two_videos(), PROMPTS, think=False)]
    model.save_pretrained(tmp_path / "ckpt", include_backbone=True)
    loaded = DeScoreModel.from_pretrained(tmp_path / "ckpt")
    after = [r.reward for r in loaded.score(two_videos(), PROMPTS, think=False)]
    assert after == pytest.approx(before, abs=1e-6)
    assert not list(tmp_path.glob(".ckpt.*")), "no staging directory left behind"
    model.save_pretrained(tmp_path / "ckpt", include_backbone=True)  # overwriting its own checkpoint is fine


def test_lora_adapter_round_trip(make_model, tmp_path):
    model = make_model()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    base = [r.reward for r in model.score(two_videos(), PROMPTS, think=False)]
    model.backbone = get_peft_model(model.backbone, lora)
    adapted = [r.reward for r in model.score(two_videos(), PROMPTS, think=False)]
    assert adapted != pytest.approx(base, abs=1e-4), "the adapter must change the rewards"
    model.save_pretrained(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "backbone").exists(), "a LoRA checkpoint does not copy the base weights"
    loaded = DeScoreModel.from_pretrained(tmp_path / "lora")
    assert [r.reward for r in loaded.score(two_videos(), PROMPTS, think=False)] == pytest.approx(adapted, abs=1e-6)
    with pytest.raises(ValueError, match="merge"):
        model.save_pretrained(tmp_path / "full", include_backbone=True)


def test_save_never_clobbers_foreign_directories(tiny_model, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not overwriting"):
        tiny_model.save_pretrained(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    with pytest.raises(FileNotFoundError, match="not a DeScore checkpoint"):
        DeScoreModel.from_pretrained(tmp_path / "mine")


def test_bad_arguments_are_named(tiny_model, tmp_path):
    from descore_reward.errors import DeScoreInputError

    video = two_videos()[0]
    with pytest.raises(DeScoreInputError, match=r"prompts\[0\]: contains the reserved token"):
        tiny_model.score([video], ["please <reward> me"], think=False)
    with pytest.raises(DeScoreInputError, match=r"prompts\[1\]: expected a string, got NoneType"):
        tiny_model.score([video, video], ["a", None], think=False)  # was a TypeError from str.replace
    with pytest.raises(DeScoreInputError, match="one prompt per video"):
        tiny_model.score([video, video], ["a", "b", "c"], think=False)
    with pytest.raises(DeScoreInputError, match=r"cots\[0\]: expected a string"):
        tiny_model([video], ["a"], cots=[3])
    with pytest.raises(VideoInputError, match=r"videos\[1\]: expected 4 dimensions"):
        tiny_model.score([video, video[0]], ["a", "b"], think=False)
    with pytest.raises(VideoInputError, match="missing.mp4"):
        tiny_model.score([video, tmp_path / "missing.mp4"], "a", think=False)


def test_scores_every_real_video(tiny_model, real_videos):
    prompt = "a person walks through a room"
    fast = tiny_model.score(real_videos, prompt, think=False, batch_size=6)
    thought = tiny_model.score(real_videos, prompt, think=True, max_new_tokens=4, batch_size=3)
    for results in (fast, thought):
        assert len(results) == len(real_videos)
        assert all(torch.isfinite(torch.tensor(r.reward)) for r in results)
        assert [r.video for r in results] == [str(p) for p in real_videos]


def test_scoring_leaves_the_global_generator_alone_from_another_thread(tiny_model):
    """Flow-GRPO's pattern: a worker thread scores while the main thread keeps drawing noise."""
    from concurrent.futures import ThreadPoolExecutor

    calls = [
        dict(think=False),
        dict(think=True, max_new_tokens=6),
        dict(think=True, max_new_tokens=6, do_sample=True, temperature=1.5),
        dict(think=True, max_new_tokens=6, do_sample=True, temperature=1.5, seed=7),
    ]
    torch.manual_seed(123)
    drawn = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for kwargs in calls:
            future = pool.submit(tiny_model.score, two_videos(), PROMPTS, **kwargs)
            while not future.done():
                drawn.append(torch.randn(4))
            future.result()
    torch.manual_seed(123)
    expected = [torch.randn(4) for _ in drawn]  # the same draws with no reward running
    assert len(drawn) > len(calls)
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected)), "a reward call rewound or drew from the generator"
    seeded = [tiny_model.score(two_videos(), PROMPTS, **calls[3]) for _ in range(2)]
    assert [r.cot for r in seeded[0]] == [r.cot for r in seeded[1]]


def test_a_one_frame_video_is_scored_on_every_path(tiny_model, tmp_path):
    from descore_reward.synthetic import Scene, render, write_mp4

    still = write_mp4(render(Scene("red", "square", "still"))[:1], tmp_path / "still.mp4")
    frame = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    for think in (False, True):
        results = tiny_model.score([still, frame], PROMPTS, think=think, max_new_tokens=4)
        assert all(torch.isfinite(torch.tensor(r.reward)) for r in results)
    with torch.no_grad():
        assert torch.isfinite(tiny_model([still], PROMPTS[:1], cots=["a red square"])).all()  # the training path


def test_one_path_is_one_video_and_absent_devices_or_backbones_are_named(tiny_model, synthetic_videos, tmp_path):
    import json

    from descore_reward.errors import CheckpointError, DeScoreInputError
    from descore_reward.modeling import recorded_backbone

    one = tiny_model.score(str(synthetic_videos[0]), "a red square", think=False)
    assert len(one) == 1, "a path is one video, not its characters"
    if not torch.cuda.is_available():
        with pytest.raises(DeScoreInputError, match="no CUDA GPU"):
            DeScoreModel.from_pretrained(tmp_path / "anything", device="cuda")
    with pytest.raises(DeScoreInputError, match="not a device name"):
        DeScoreModel.from_pretrained(tmp_path / "anything", device="gpu0")
    tiny_model.save_pretrained(tmp_path / "moved")
    config_path = tmp_path / "moved" / "descore_config.json"
    config = json.loads(config_path.read_text())
    real_backbone = config["backbone"]
    config_path.write_text(json.dumps({**config, "backbone": str(tmp_path / "elsewhere" / "backbone")}))
    with pytest.raises(CheckpointError, match=r"moved: its backbone .*elsewhere.*--backbone.*backbone=WHERE_IT_IS"):
        DeScoreModel.from_pretrained(tmp_path / "moved")
    found = DeScoreModel.from_pretrained(tmp_path / "moved", backbone=real_backbone)
    again = found.score(str(synthetic_videos[0]), "a red square", think=False)
    assert again[0].reward == pytest.approx(one[0].reward, abs=1e-5)
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert recorded_backbone(snapshot) == "Qwen/Qwen3-VL-8B-Instruct", "a hub-cache folder is recorded as its id"
    assert recorded_backbone("Qwen/Qwen3-VL-8B-Instruct") == "Qwen/Qwen3-VL-8B-Instruct"


def test_thinking_shows_videos_done_and_tokens_written(tiny_model, synthetic_videos, capsys):
    plain = tiny_model.score(synthetic_videos[:2], "a red square", max_new_tokens=9, progress=False)
    shown = tiny_model.score(synthetic_videos[:2], "a red square", max_new_tokens=9, progress=True, batch_size=1)
    errors = capsys.readouterr().err
    assert "thinking" in errors and "2/2" in errors and "tokens" in errors
    assert [r.cot for r in shown] == [r.cot for r in plain], "the streamer changes nothing it watches"


def test_an_offline_hub_id_is_named_with_how_to_get_it(tmp_path):
    """HF_HUB_OFFLINE is read when huggingface_hub is imported: set it for a fresh process, as a user does."""
    import os
    import subprocess
    import sys

    code = "from descore_reward.modeling import DeScoreModel\nDeScoreModel.from_backbone('nobody/no-such-model')\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("descore_reward.errors.CheckpointError: backbone 'nobody/no-such-model'")
    assert "HF_HUB_OFFLINE is set" in last and "hf download nobody/no-such-model" in last
