"""VBench results: the file format both evaluators write, paired bootstrap gains, and the comparison
notebook executed headless on result files written here."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from descore_reward.vbench import results as vbench

NOTEBOOK = Path(__file__).parents[1] / "examples" / "vbench" / "compare.ipynb"


def per_video(prompts: int, rng: np.random.Generator, shift: float = 0.0) -> dict[str, dict[str, float]]:
    """Results for `prompts` x 5 videos named as VBench's standard mode, every dimension."""
    videos = [f"prompt {p}-{i}.mp4" for p in range(prompts) for i in range(5)]
    values = {}
    for dimension in vbench.VBENCH_DIMENSIONS:
        if dimension == "dynamic_degree":
            values[dimension] = {v: float(rng.random() < 0.5 + shift) for v in videos}
        else:
            values[dimension] = {v: float(np.clip(0.6 + shift + 0.05 * rng.standard_normal(), 0, 1)) for v in videos}
    return values


def test_results_files_round_trip_in_vbench_shape(tmp_path):
    written = per_video(3, np.random.default_rng(0))
    path = vbench.write_results(tmp_path / "run_eval_results.json", written)
    raw = json.loads(path.read_text())
    assert set(raw) == set(vbench.VBENCH_DIMENSIONS)
    first = raw["imaging_quality"][1][0]
    assert first["video_results"] == pytest.approx(100 * written["imaging_quality"][first["video_path"]])
    assert all(isinstance(row["video_results"], bool) for row in raw["dynamic_degree"][1])
    results = vbench.read_results(path)
    assert results.name == "run"
    for dimension in vbench.VBENCH_DIMENSIONS:
        assert results.videos[dimension] == pytest.approx(written[dimension])
        assert results.aggregates[dimension] == pytest.approx(np.mean(list(written[dimension].values())))


def test_bad_results_files_are_named(tmp_path):
    bad = tmp_path / "bad_eval_results.json"
    bad.write_text(json.dumps({"subject_consistency": [0.9, [{"video": "a-0.mp4"}]]}))
    with pytest.raises(ValueError, match=r"bad_eval_results.json: dimension 'subject_consistency': expected"):
        vbench.read_results(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match=r"bad_eval_results.json: not a VBench results file"):
        vbench.read_results(bad)
    with pytest.raises(FileNotFoundError, match="missing_eval_results.json: no such results file"):
        vbench.read_results(tmp_path / "missing_eval_results.json")


def test_bootstrap_gain_pairs_videos_and_resamples_prompts():
    rng = np.random.default_rng(0)
    baseline = vbench.RunResults("baseline", {}, per_video(72, rng))
    same = vbench.bootstrap_gain(baseline, baseline, "aesthetic_quality", resamples=2000)
    assert same.gain == 0 and same.low == same.high == 0 and same.inside_noise
    shifted = {d: {v: x + 0.01 for v, x in values.items()} for d, values in baseline.videos.items()}
    better = vbench.bootstrap_gain(vbench.RunResults("better", {}, shifted), baseline, "aesthetic_quality")
    assert better.gain == pytest.approx(0.01) and better.low == pytest.approx(0.01) and not better.inside_noise
    assert (better.videos, better.prompts) == (360, 72)

    # Two independent yes/no runs at 72 prompts x 5 videos: a 95% interval of about +-0.07 on the gain
    # (standard error sqrt(2 * 0.25 / 360) = 0.037): dynamic-degree gains like the paper's are noise.
    other = vbench.RunResults("other", {}, per_video(72, rng))
    dynamic = vbench.bootstrap_gain(other, baseline, "dynamic_degree")
    assert 0.05 < (dynamic.high - dynamic.low) / 2 < 0.09 and dynamic.inside_noise

    # A prompt's videos move together: resampling prompts, not videos, widens the interval.
    clustered = {d: {v: x + (0.05 if v.startswith("prompt 1") else -0.05) for v, x in values.items()}
                 for d, values in baseline.videos.items()}  # fmt: skip
    gain = vbench.bootstrap_gain(vbench.RunResults("c", {}, clustered), baseline, "aesthetic_quality")
    assert gain.high - gain.low > 0.01

    with pytest.raises(ValueError, match="share no 'aesthetic_quality' videos"):
        renamed = {d: {"x" + v: x for v, x in values.items()} for d, values in baseline.videos.items()}
        vbench.bootstrap_gain(vbench.RunResults("r", {}, renamed), baseline, "aesthetic_quality")


def test_the_notebook_is_the_paired_script():
    jupytext = pytest.importorskip("jupytext")
    notebook, script = jupytext.read(NOTEBOOK), jupytext.read(NOTEBOOK.with_suffix(".py"))
    assert [c.source for c in notebook.cells] == [c.source for c in script.cells], "run: jupytext --sync compare.py"


@pytest.mark.slow
def test_the_comparison_notebook_runs_headless_and_shows_the_results(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    rng = np.random.default_rng(1)
    written = {name: per_video(8, rng, shift) for name, shift in (("baseline", 0), ("grpo", 0.1), ("best_of_4", 0.05))}
    for name, values in written.items():
        vbench.write_results(vbench.results_path(tmp_path, name), values)
    monkeypatch.setenv("VBENCH_RESULTS", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}
    ).execute()

    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert set(comparison["runs"]) == set(written)
    shown = "".join(
        output.get("data", {}).get("text/markdown", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    for name, values in written.items():
        for dimension in vbench.VBENCH_DIMENSIONS:
            score = np.mean(list(values[dimension].values()))
            assert comparison["runs"][name][dimension]["score"] == pytest.approx(score)
            assert f"{score:.3f}" in shown
    grpo = comparison["runs"]["grpo"]["aesthetic_quality"]
    assert grpo["low"] > 0 and not grpo["inside_noise"] and grpo["paper"] == vbench.PAPER["grpo"]["aesthetic_quality"]
    assert (tmp_path / "comparison.png").stat().st_size > 0 and (tmp_path / "comparison.md").read_text() in shown


def test_curves_show_their_scale_flat_lines_stay_flat_and_bounds_are_not_cut():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from descore_reward.plots import show_scale

    figure, axis = plt.subplots()
    show_scale(axis, [1.0, 1.0, 1.0])
    low, high = axis.get_ylim()
    assert high - low >= 0.1 and high > 1.0, "a constant is drawn flat, and 1.0 is inside the frame"
    show_scale(axis, [0.5, 0.52, float("nan"), 0.71])
    low, high = axis.get_ylim()
    assert low < 0.5 and high > 0.71 and high - low < 0.3, "a moving series still fills its panel"
    plt.close(figure)


def test_the_vbench_script_scores_the_librarys_dimensions():
    """`examples/vbench/evaluate.py` runs in VBench's environment, without this library, so it keeps a
    copy of the dimension list: the copy is the library's."""
    import ast
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "vbench" / "evaluate.py"
    tree = ast.parse(script.read_text(encoding="utf-8"))
    assigned = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert ast.literal_eval(assigned["VBENCH_DIMENSIONS"]) == vbench.VBENCH_DIMENSIONS
