"""The quick-look VBench evaluator on videos with known answers, with random weights of the real
architectures in a VBench-layout cache. (Its agreement with VBench itself, video by video, is
checked in `test_vbench_evaluate.py`, where a VBench environment exists.)"""

import pytest
import torch

from descore_reward.synthetic import write_mp4
from descore_reward.vbench import results as vbench

pytest.importorskip("timm")
pytest.importorskip("open_clip")
from descore_reward.vbench.quick_look import CACHE_FILES, QuickLook, is_dynamic, top_flow_magnitude  # noqa: E402

CONSISTENCY = ["subject_consistency", "background_consistency"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """DINO's ViT-B/16 (timm's architecture, DINO's parameter names) and OpenAI's CLIP ViT-B/32 as a
    state dict of OpenAI's layout (open_clip's CLIP keeps OpenAI's names), random."""
    import open_clip
    import timm

    path = tmp_path_factory.mktemp("vbench-cache")
    torch.manual_seed(0)
    for dimension, model in (
        ("subject_consistency", timm.create_model("vit_base_patch16_224", num_classes=0)),
        ("background_consistency", open_clip.create_model("ViT-B-32")),
    ):
        file = path / CACHE_FILES[dimension][0]
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), file)
    return path


def cross_fade(frames: int = 8) -> torch.Tensor:
    """Two random textures blended from the first to the second: content that changes steadily, which
    any continuous feature map follows (random features barely see where a small square is)."""
    first, last = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(0)).float()
    weights = torch.linspace(0, 1, frames)[:, None, None, None]
    return ((1 - weights) * first + weights * last).round().to(torch.uint8)


def test_still_frames_are_fully_consistent_and_shuffled_ones_less(cache):
    quick_look = QuickLook(CONSISTENCY, cache_dir=cache)
    video = cross_fade()
    still = quick_look.score(video[:1].repeat(8, 1, 1, 1), fps=16)
    ordered = quick_look.score(video, fps=16)
    # The first frame stays first, so only the frame-to-frame term changes.
    order = torch.cat(
        [torch.zeros(1, dtype=torch.long), 1 + torch.randperm(7, generator=torch.Generator().manual_seed(0))]
    )
    shuffled = quick_look.score(video[order], fps=16)
    for dimension in CONSISTENCY:
        assert still[dimension] == pytest.approx(1.0, abs=1e-5)
        assert shuffled[dimension] < ordered[dimension] < still[dimension], dimension


def test_evaluate_writes_a_results_file_the_notebook_reads(cache, tmp_path):
    quick_look = QuickLook(["background_consistency"], cache_dir=cache)
    paths = []
    for i, frames in enumerate((cross_fade(), cross_fade()[:1].repeat(8, 1, 1, 1))):
        paths.append(write_mp4(frames.permute(0, 2, 3, 1).numpy(), tmp_path / f"a red square-{i}.mp4", fps=16))
    quick_look.evaluate(paths, vbench.results_path(tmp_path, "quick"))
    results = vbench.read_results(vbench.results_path(tmp_path, "quick"))
    assert results.videos["background_consistency"]["a red square-1.mp4"] == pytest.approx(1.0, abs=1e-5)


def test_motion_decision_rule_and_flow_magnitude():
    """VBench's rule: at 256 px the threshold is 6 px; 16 compared frames need 4 moving pairs."""
    assert is_dynamic([7, 7, 7, 7] + [0] * 11, 256, 320, 16)
    assert not is_dynamic([7, 7, 7] + [0] * 12, 256, 320, 16)
    assert not is_dynamic([6.0] * 15, 256, 320, 16), "the threshold itself does not count"
    assert is_dynamic([3.1] * 4, 128, 128, 16) and not is_dynamic([], 128, 128, 1)
    flow = torch.zeros(2, 20, 20)
    flow[0], flow[1] = 3.0, 4.0  # 5 px everywhere
    assert top_flow_magnitude(flow) == pytest.approx(5.0)
    flow[:, 0, :10] = torch.tensor([30.0, 0.0])[:, None]  # 10 of the top 20 pixels (5% of 400) move 30 px
    assert top_flow_magnitude(flow) == pytest.approx((10 * 30 + 10 * 5) / 20)


def test_missing_weights_are_named_before_anything_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing \['raft_model/models/raft-things.pth'\]"):
        QuickLook(["dynamic_degree"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"dimensions \['motion'\]"):
        QuickLook(["motion"], cache_dir=tmp_path)


def test_the_command_line_scores_a_folder_and_names_a_missing_cache(cache, tmp_path, capsys):
    from descore_reward.cli import main

    folder = tmp_path / "videos"
    folder.mkdir()
    write_mp4(cross_fade().permute(0, 2, 3, 1).numpy(), folder / "a fade-0.mp4", fps=16)
    args = ["quick-look", str(folder), "--name", "run", "--out", str(tmp_path / "results")]
    assert main([*args, "--dimensions", "background_consistency", "--cache", str(cache)]) == 0
    assert "background_consistency" in capsys.readouterr().out
    assert vbench.read_results(vbench.results_path(tmp_path / "results", "run")).videos["background_consistency"]
    assert main([*args, "--cache", str(tmp_path / "empty")]) == 2
    assert "missing ['dino_model/dino_vitbase16_pretrain.pth'" in capsys.readouterr().err
