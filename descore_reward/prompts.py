"""The evaluation instruction and the chain-of-thought format: reasoning, then JSON sub-scores.

A CoT looks like::

    The red circle is present and round ... The camera never moves, as asked.
    {"object": 5, "dynamics": 4, "environment": 3, "style": 4, "camera_movement": 5}

`parse_cot` splits such text into its reasoning and its scores, and never raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# The five alignment dimensions the paper's annotators compare videos on (section 3.1).
LIKERT5_DIMENSIONS = ("object", "dynamics", "environment", "style", "camera_movement")
DIMENSION_QUESTIONS = {
    "object": "Are the objects and subjects of the prompt present, complete and correct?",
    "dynamics": "Do they move and act as the prompt says, with plausible motion?",
    "environment": "Are the background, setting and lighting those of the prompt?",
    "style": "Does the visual style (realism, art style, colour, mood) follow the prompt?",
    "camera_movement": "Does the camera move (or stay still) as the prompt says?",
}
MIN_SCORE, MAX_SCORE = 1, 5

_INSTRUCTION = """You are an expert judge of AI-generated videos. The video was generated from this prompt:
"{prompt}"

Judge how well the video aligns with the prompt on five dimensions:
{questions}

First think step by step about what you see, dimension by dimension. Then end your answer with one JSON \
object giving each dimension an integer score from {lo} (worst) to {hi} (best), for example:
{example}"""


def instruction(prompt: str) -> str:
    """The user instruction for one video generated from `prompt` (the video itself goes before it)."""
    questions = "\n".join(f"- {name}: {question}" for name, question in DIMENSION_QUESTIONS.items())
    example = json.dumps({name: 3 for name in LIKERT5_DIMENSIONS})
    return _INSTRUCTION.format(prompt=prompt, questions=questions, lo=MIN_SCORE, hi=MAX_SCORE, example=example)


def format_cot(reasoning: str, scores: dict[str, int]) -> str:
    """The canonical CoT text for `reasoning` and `scores` (one integer per dimension)."""
    return f"{reasoning.strip()}\n{json.dumps({name: int(scores[name]) for name in LIKERT5_DIMENSIONS})}"


@dataclass(frozen=True)
class ParsedCoT:
    """A CoT split into its parts.

    reasoning: the text before the JSON object (the whole text when there is none).
    scores: the five integer sub-scores, or None unless every dimension has an integer in 1..5.
    trailing: whatever text follows the JSON object.
    """

    reasoning: str
    scores: dict[str, int] | None
    trailing: str = ""


def _last_json_object(text: str) -> tuple[int, int, object] | None:
    """(start, end, value) of the last `{...}` in `text` that parses as JSON, or None."""
    end = text.rfind("}")
    while end != -1:
        start = text.rfind("{", 0, end)
        while start != -1:
            try:
                return start, end + 1, json.loads(text[start : end + 1])
            except ValueError:
                start = text.rfind("{", 0, start)
        end = text.rfind("}", 0, end)
    return None


def _valid_scores(value: object) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    normalised = {str(key).strip().lower().replace(" ", "_"): score for key, score in value.items()}
    scores = {}
    for name in LIKERT5_DIMENSIONS:
        score = normalised.get(name)
        if isinstance(score, bool) or not isinstance(score, int) or not MIN_SCORE <= score <= MAX_SCORE:
            return None
        scores[name] = score
    return scores


def parse_cot(text: str) -> ParsedCoT:
    """Split model text into reasoning, sub-scores and trailing text. Never raises."""
    if not isinstance(text, str):
        return ParsedCoT(reasoning="", scores=None)
    found = _last_json_object(text)
    if found is None:
        return ParsedCoT(reasoning=text.strip(), scores=None)
    start, end, value = found
    reasoning = text[:start].rstrip()
    if reasoning.endswith("```json"):
        reasoning = reasoning[: -len("```json")].rstrip()
    trailing = text[end:].strip()
    if trailing.startswith("```"):
        trailing = trailing[3:].strip()
    return ParsedCoT(reasoning=reasoning, scores=_valid_scores(value), trailing=trailing)
