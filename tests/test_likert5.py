import json

from descore_reward.rubrics import LIKERT5_DIMENSIONS, likert5_cot, likert5_instruction, parse_likert5_cot

GOOD = {"object": 5, "dynamics": 4, "environment": 3, "style": 2, "camera_movement": 1}


def test_instruction_names_prompt_and_every_dimension():
    text = likert5_instruction("a cat surfing")
    assert '"a cat surfing"' in text
    for name in LIKERT5_DIMENSIONS:
        assert name in text


def test_round_trip():
    parsed = parse_likert5_cot(likert5_cot("The cat surfs well.", GOOD))
    assert parsed.reasoning == "The cat surfs well." and parsed.scores == GOOD and parsed.trailing == ""


def test_tolerant_forms():
    spaced = {"Object": 5, "dynamics": 4, "environment": 3, "style": 2, "camera movement": 1}
    fenced = "Thinking.\n```json\n" + json.dumps(spaced) + "\n```"
    parsed = parse_likert5_cot(fenced)
    assert parsed.scores == GOOD and parsed.reasoning == "Thinking."
    parsed = parse_likert5_cot("Reasoning {with braces} here. " + json.dumps(GOOD) + " and then more text")
    assert parsed.scores == GOOD and parsed.trailing == "and then more text"
    assert parsed.reasoning == "Reasoning {with braces} here."


def test_malformed_text_never_raises():
    missing = dict(GOOD)
    del missing["style"]
    cases = [
        "",
        "no json here",
        "{",
        "}{",
        '{"object": 5',
        json.dumps(missing),
        json.dumps({**GOOD, "style": 6}),
        json.dumps({**GOOD, "style": 2.5}),
        json.dumps({**GOOD, "style": "2"}),
        json.dumps({**GOOD, "style": True}),
        "[1, 2, 3]",
        None,
        12,
    ]
    for text in cases:
        parsed = parse_likert5_cot(text)
        assert parsed.scores is None, text
