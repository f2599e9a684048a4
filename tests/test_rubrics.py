"""Rubrics: parsers that never raise, rule rewards with known totals, and checkpoints that keep their
instruction text."""

import json

import pytest

from descore_reward.rubrics import DeScoreRubric, Likert5Rubric, get_rubric

DESCORE = DeScoreRubric()
LIKERT = Likert5Rubric()
TRUTH = {"subject": 2, "dynamics": 1, "camera": "N/A", "environment": 2, "style": 0}


def answer(scores, overall=3.5, fence=True, after=""):
    body = json.dumps({"dimensional_scores": scores, "overall_score": overall})
    body = f"```json\n{body}\n```" if fence else body
    return f"The prompt asks for a dog running.\n<answer>\n{body}\n</answer>{after}"


@pytest.mark.parametrize("fence", [True, False])
def test_descore_parser_reads_fenced_and_bare_json(fence):
    parsed = DESCORE.parse(answer(TRUTH, fence=fence))
    assert parsed.well_formed and parsed.scores == TRUTH and parsed.overall == 3.5
    assert parsed.reasoning == "The prompt asks for a dog running."


def test_descore_parser_normalises_and_tolerates():
    written = {"Subject": "2", "dynamics": 1.0, "camera": "n/a", "environment": "NA", "style": "bad", "extra": 2}
    parsed = DESCORE.parse(answer(written, overall="4.2", after="\nThat is all."))
    assert parsed.well_formed, "trailing text after </answer> is allowed"
    assert parsed.scores == {"subject": 2, "dynamics": 1, "camera": "N/A", "environment": "N/A"}
    assert parsed.overall == pytest.approx(4.2)
    assert DESCORE.parse(answer(TRUTH, overall=7.0)).overall is None, "outside [1, 5]"
    unclosed = "reasoning <answer>\n" + json.dumps({"dimensional_scores": TRUTH, "overall_score": 2})
    assert DESCORE.parse(unclosed).scores == TRUTH


@pytest.mark.parametrize(
    "text",
    [
        "no answer block at all",
        "<answer>{broken json</answer>",
        '<answer>{"overall_score": 3}</answer>',
        '<answer>{"dimensional_scores": [2, 1]}</answer>',
        "",
        None,
        42,
    ],
)
def test_descore_parser_never_raises(text):
    parsed = DESCORE.parse(text)
    assert not parsed.well_formed and parsed.scores is None


def test_descore_rollout_rewards_have_the_authors_totals():
    # 3 of 5 dimensions right (subject, camera "N/A", environment), format 1, length in characters.
    text = answer({"subject": 2, "dynamics": 2, "camera": "N/A", "environment": 2, "style": 1})
    total, terms = DESCORE.rollout_reward(text, tokens=10, truth=TRUTH)
    assert len(text) < 500
    assert terms == {"format": 1.0, "quality": 0.6, "length": 0.0}
    assert total == pytest.approx(0.7 * 0.6 + 0.1)
    for characters, level in [(499, 0.0), (500, 0.2), (999, 0.2), (1000, 0.4), (1500, 0.6), (1999, 0.6), (2000, 1.0)]:
        padded = "x" * (characters - len(text)) + text
        assert len(padded) == characters
        assert DESCORE.rollout_reward(padded, 10, TRUTH)[1]["length"] == level, characters
    long_and_right = "y" * 2100 + answer(TRUTH)
    assert DESCORE.rollout_reward(long_and_right, 10, TRUTH)[0] == pytest.approx(1.0)
    assert DESCORE.rollout_reward("no answer", 10, TRUTH)[0] == 0.0


AUTHORS_TRUTH = {"subject": 2, "dynamics": 1, "camera": "N/A", "environment": 2, "style": 2}


def block(content: str) -> str:
    return f"<answer>\n{content}\n</answer>"


def fenced(value) -> str:
    return "```json\n" + json.dumps(value) + "\n```"


CANONICAL = {"dimensional_scores": AUTHORS_TRUTH, "overall_score": 4.5}
CAPITALISED = {("Subject" if d == "subject" else d): v for d, v in AUTHORS_TRUTH.items()}
TEMPLATE_ECHO = {"dimensional_scores": {d: "<0|1|2|N/A>" for d in AUTHORS_TRUTH}, "overall_score": "<1-5>"}


@pytest.mark.parametrize(
    "text, total",
    [
        ("Reasoning.\n" + block(fenced(CANONICAL)), 0.80),
        ("Reasoning.\n" + block(json.dumps(CANONICAL)), 0.80),  # the fence is optional
        ("Reasoning.\n<answer>\n" + fenced(CANONICAL), 0.0),  # no closing tag: a truncated answer
        (block(fenced(TEMPLATE_ECHO)) + " then the real one " + block(fenced(CANONICAL)), 0.10),  # the first block
        ("Reasoning.\n" + block("Here: " + json.dumps(CANONICAL) + " done."), 0.0),  # text around the JSON
        (block(fenced({"dimensional_scores": {d: str(v) for d, v in AUTHORS_TRUTH.items()}})), 0.24),  # "2" != 2
        (block(fenced({"dimensional_scores": CAPITALISED})), 0.66),  # keys are not case-folded
        (block(fenced({"dimensional_scores": [2, 1, "N/A", 2, 2]})), 0.10),  # format only
        (block(fenced({"dimensional_scores": {**AUTHORS_TRUTH, "camera": "n/a"}})), 0.66),
        (block(fenced({"overall_score": 3})), 0.0),
        (block(fenced([1, 2])), 0.0),
    ],
)
def test_descore_rollout_rewards_follow_the_authors_rule(text, total):
    """The authors' totals for short answers (length 0) against one truth, case by case."""
    assert DESCORE.rewards.answer_parsing == "exact", "the descore rubric's rollout rewards are the authors'"
    assert DESCORE.rollout_reward(text, tokens=10, truth=AUTHORS_TRUTH)[0] == pytest.approx(total)


def test_lenient_rollout_rewards_are_an_option_that_pays_what_the_reader_understands():
    import dataclasses

    lenient = dataclasses.replace(DESCORE.rewards, answer_parsing="lenient")
    truncated = "Reasoning.\n<answer>\n" + fenced(CANONICAL)
    as_strings = block(fenced({"dimensional_scores": {d: str(v) for d, v in AUTHORS_TRUTH.items()}}))
    assert DESCORE.rollout_reward(truncated, 10, AUTHORS_TRUTH, lenient)[0] == pytest.approx(0.8)
    assert DESCORE.rollout_reward(as_strings, 10, AUTHORS_TRUTH, lenient)[0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="answer_parsing"):
        dataclasses.replace(DESCORE.rewards, answer_parsing="loose")
    with pytest.raises(ValueError, match="lenient"):
        LIKERT.rollout_reward("x", 1, {}, dataclasses.replace(LIKERT.rewards, answer_parsing="exact"))


def test_likert5_rubric_keeps_the_first_format():
    scores = {"object": 5, "dynamics": 4, "environment": 3, "style": 2, "camera_movement": 1}
    text = LIKERT.format_answer("Reasoning here.", scores)
    parsed = LIKERT.parse(text)
    assert parsed.well_formed and parsed.scores == scores and parsed.overall is None
    total, terms = LIKERT.rollout_reward(text, tokens=100, truth=scores)
    assert terms == {"format": 1.0, "quality": 1.0, "length": 1.0} and total == pytest.approx(2.5)
    assert not LIKERT.parse(text + " and a postscript").well_formed


def test_custom_instruction_templates():
    rubric = get_rubric("descore", "Rate this video for: {prompt}. Answer in the usual block.")
    assert rubric.instruction("a cat") == "Rate this video for: a cat. Answer in the usual block."
    assert rubric.parse(answer(TRUTH)).scores == TRUTH, "a custom wording keeps the built-in answer format"
    with pytest.raises(ValueError, match="{prompt}"):
        get_rubric("descore", "no placeholder here")
    with pytest.raises(ValueError, match="once"):
        get_rubric("descore", "<video> {prompt} <video>")
    assert get_rubric("descore", "P: {prompt}. <video> Judge.").instruction_around_video("<video>") == (
        "P: <video>. ",
        " Judge.",
    ), "the split comes before the prompt goes in"
    with pytest.raises(ValueError, match="unknown rubric"):
        get_rubric("stars")
    assert '{"dimensional_scores": {' in DESCORE.instruction("x"), "JSON braces in a template are kept"


def test_checkpoints_keep_their_instruction_text(make_model, tmp_path):
    import dataclasses

    from descore_reward import rubrics
    from descore_reward.modeling import DeScoreModel

    model = make_model()
    assert model.config.rubric == "descore" and model.config.head_bias is False
    model.save_pretrained(tmp_path / "model", include_backbone=True)
    saved = json.loads((tmp_path / "model" / "descore_config.json").read_text())
    assert saved["instruction_template"] == rubrics.DESCORE_INSTRUCTION
    prefix = model.chat_prefix("a dog")
    original = rubrics.RUBRICS["descore"]
    reworded = dataclasses.make_dataclass("Reworded", [], bases=(original,), frozen=True)
    rubrics.RUBRICS["descore"] = lambda template=None: reworded(
        "New wording: {prompt}" if template is None else template
    )
    try:  # a later release rewords the built-in instruction: the old checkpoint keeps its own
        assert DeScoreModel.from_pretrained(tmp_path / "model").chat_prefix("a dog") == prefix
    finally:
        rubrics.RUBRICS["descore"] = original
