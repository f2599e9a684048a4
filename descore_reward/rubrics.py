"""Rubrics: the instruction a model is asked, the answer format its CoT ends with, the parser of that
answer, and the stage-2 rule rewards that judge it, as one named unit.

- `descore` (the default): the authors' rubric. Dimensions `subject` and `dynamics` (primary),
  `camera`, `environment`, `style` (secondary), each 2 (perfect), 1 (partial or minor flaws),
  0 (failure or hallucination) or "N/A"; an `overall_score` in [1.00, 5.00]. The CoT is free
  reasoning, then `<answer>`, a fenced JSON object `{"dimensional_scores": {...}, "overall_score": x}`,
  `</answer>`.
- `likert5`: this library's first format: five dimensions scored 1..5 in a JSON object after the
  reasoning, e.g. `... The camera never moves, as asked. {"object": 5, "dynamics": 4, ...}`.

A checkpoint records its rubric's name and the instruction template text it was trained with, so it
always scores with that prompt, whatever later versions of this file say. A custom template (a text
file with a `{prompt}` placeholder) keeps a built-in answer format: that is how to reproduce the
authors' exact wording. Parsers never raise.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DeScoreInputError

NOT_APPLICABLE = "N/A"
PROMPT_PLACEHOLDER = "{prompt}"
VIDEO_PLACEHOLDER = "<video>"  # where a template puts the video (the authors' stage 2 and inference); else first


@dataclass(frozen=True)
class Answer:
    """A CoT split into its parts.

    reasoning: the text before the answer.
    scores: the sub-scores the answer gives (only valid values of known dimensions), or None when it
        holds none.
    overall: the overall score, when the rubric has one and the answer gives it.
    well_formed: whether the answer has the rubric's required structure (the format reward).
    """

    reasoning: str
    scores: dict[str, int | str] | None
    overall: float | None = None
    well_formed: bool = False


@dataclass(frozen=True)
class RolloutRewardConfig:
    """`R = format_weight * format + quality_weight * quality + length_weight * length`.

    length_unit: "characters" or "tokens" of the response.
    length_levels: `(threshold, value)` pairs, ascending: the length term is the value of the highest
        threshold at or below the length (0 below the first).
    answer_parsing: how the answer is read for the format and quality terms. "exact" (the `descore`
        default, the authors' rule): the first `<answer>...</answer>` block, closing tag required, an
        optional ```json fence stripped, the rest parsed as JSON as a whole; format when the object has
        `dimensional_scores`; quality compares each value with `==` (2 is not "2", "n/a" is not "N/A").
        "lenient": the reader behind `ScoreResult.scores` (the last block, an unclosed one too, the
        first `{` to the last `}`, keys lower-cased, values normalised), which pays answers the exact
        rule scores 0.
    """

    format_weight: float
    quality_weight: float
    length_weight: float
    length_unit: str
    length_levels: tuple[tuple[float, float], ...]
    answer_parsing: str = "lenient"

    def __post_init__(self):
        if self.length_unit not in ("characters", "tokens"):
            raise DeScoreInputError(f"length_unit must be 'characters' or 'tokens', got {self.length_unit!r}")
        if self.answer_parsing not in ("exact", "lenient"):
            raise DeScoreInputError(f"answer_parsing must be 'exact' or 'lenient', got {self.answer_parsing!r}")
        thresholds = [threshold for threshold, _ in self.length_levels]
        if thresholds != sorted(thresholds):
            raise DeScoreInputError(f"length_levels must have ascending thresholds, got {self.length_levels}")

    def length_reward(self, length: float) -> float:
        value = 0.0
        for threshold, level in self.length_levels:
            if length >= threshold:
                value = level
        return value


@dataclass(frozen=True)
class Rubric:
    """Base of the built-in rubrics; `instruction_template` holds `{prompt}` where the prompt goes and,
    optionally, one `<video>` where the video goes (without one, the video comes before the text)."""

    instruction_template: str
    name: str = field(default="", init=False)
    dimensions: tuple[str, ...] = field(default=(), init=False)
    rewards: RolloutRewardConfig = field(default=None, init=False)  # the rubric's default rule rewards
    repetition_penalty: float | None = field(default=None, init=False)
    max_new_tokens: int = field(default=512, init=False)

    def __post_init__(self):
        if PROMPT_PLACEHOLDER not in self.instruction_template:
            raise DeScoreInputError(f"an instruction template must contain {PROMPT_PLACEHOLDER} where the prompt goes")
        if self.instruction_template.count(VIDEO_PLACEHOLDER) > 1:
            raise DeScoreInputError(
                f"an instruction template may contain {VIDEO_PLACEHOLDER} once, where the video goes"
            )

    def instruction(self, prompt: str) -> str:
        """The instruction text for `prompt` (a `<video>` marker, if any, left in place)."""
        return self.instruction_template.replace(PROMPT_PLACEHOLDER, prompt)

    def instruction_around_video(self, prompt: str) -> tuple[str, str]:
        """The instruction's text before and after the video: ("", everything) without a `<video>` marker.
        The prompt is put in after the split, so a prompt that says "<video>" stays text."""
        before, marker, after = self.instruction_template.partition(VIDEO_PLACEHOLDER)
        if not marker:
            before, after = "", before
        return before.replace(PROMPT_PLACEHOLDER, prompt), after.replace(PROMPT_PLACEHOLDER, prompt)

    def parse(self, text: str) -> Answer:
        raise NotImplementedError

    def format_answer(self, reasoning: str, scores: dict, overall: float | None = None) -> str:
        """The canonical CoT for `reasoning` and `scores` (what stage-1 data and tests write)."""
        raise NotImplementedError

    def check_truth(self, scores: object) -> str | None:
        """Why `scores` cannot be a stage-2 ground truth of this rubric, or None when it can."""
        raise NotImplementedError

    def quality_reward(self, answer: Answer, truth: dict) -> float:
        raise NotImplementedError

    def judge_answer(self, text: str, truth: dict, parsing: str) -> tuple[float, float]:
        """The format and quality terms of one rollout, its answer read the `parsing` way."""
        if parsing != "lenient":
            raise DeScoreInputError(f"the {self.name!r} rubric reads answers only the lenient way, not {parsing!r}")
        answer = self.parse(text)
        return float(answer.well_formed), self.quality_reward(answer, truth)

    def rollout_reward(
        self, text: str, tokens: int, truth: dict, config: RolloutRewardConfig | None = None
    ) -> tuple[float, dict[str, float]]:
        """The weighted rule reward of one rollout (`tokens` CoT tokens) and each of its terms."""
        config = config or self.rewards
        length = len(text) if config.length_unit == "characters" else tokens
        answer_format, quality = self.judge_answer(text, truth, config.answer_parsing)
        terms = {"format": answer_format, "quality": quality, "length": config.length_reward(length)}
        total = (
            config.format_weight * terms["format"]
            + config.quality_weight * terms["quality"]
            + config.length_weight * terms["length"]
        )
        return total, terms


# ------------------------------------------------------------------------------------------- descore

DESCORE_DIMENSIONS = ("subject", "dynamics", "camera", "environment", "style")

DESCORE_INSTRUCTION = """You are an expert judge of AI-generated videos. The video was generated from this prompt:
"{prompt}"

Judge how faithfully the video realises the prompt. Reason in three stages:
1. Read the prompt and list the visual elements it asks for: subjects, what they do, the camera, the \
setting and the style.
2. Describe what the video actually shows.
3. Compare the two, dimension by dimension.

Dimensions (subject and dynamics are primary, the other three secondary):
- subject: are the subjects present, complete and correct?
- dynamics: do they move and act as asked, with plausible motion?
- camera: does the camera move, or stay still, as asked?
- environment: are the setting, background and lighting as asked?
- style: does the visual style follow the prompt?
Score each 2 (perfect), 1 (partial, or minor flaws), 0 (failure or hallucination), or "N/A" when the \
prompt asks nothing of it.

Then give an overall score from 1.00 to 5.00:
- 5.00: both primary dimensions are 2 and every secondary one is 2 or N/A;
- 4.00 to 4.99: both primary dimensions are 2 and the flaws are secondary only;
- 3.00 to 3.99: one primary dimension is 1, or the intent is met with noticeable secondary flaws;
- 2.00 to 2.99: one primary dimension is 0;
- 1.00 to 1.99: both primary dimensions are 0.

End with the answer block, exactly in this form:
<answer>
```json
{"dimensional_scores": {"subject": 2, "dynamics": 1, "camera": "N/A", "environment": 2, "style": 2}, \
"overall_score": 3.5}
```
</answer>"""

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_CLOSED_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_JSON_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def exact_answer(text: str) -> object:
    """The authors' reading of an answer: the JSON value of the first closed `<answer>` block, with an
    optional ```json fence around it and nothing else, or None."""
    block = _CLOSED_ANSWER_BLOCK.search(text) if isinstance(text, str) else None
    if block is None:
        return None
    content = block.group(1).strip()
    fenced = _JSON_FENCE.match(content)
    try:
        return json.loads(fenced.group(1) if fenced else content)
    except ValueError:
        return None


def normalise_value(value: object) -> int | str | None:
    """A sub-score as a policy may write it (2, "2", "n/a", "NA") in the rubric's form, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value in (0, 1, 2):
        return value
    if isinstance(value, float) and value in (0.0, 1.0, 2.0):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.upper().replace("/", "") == "NA":
            return NOT_APPLICABLE
        if text in ("0", "1", "2"):
            return int(text)
    return None


def _json_object(text: str) -> object:
    """The JSON object in `text` (fences and text around it allowed), or None."""
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        return None
    try:
        return json.loads(text[start : end + 1])
    except ValueError:
        return None


@dataclass(frozen=True)
class DeScoreRubric(Rubric):
    """The authors' rubric (see the module docstring); greedy with repetition penalty 1.05 and up to
    4,096 new tokens by default, as their inference."""

    instruction_template: str = DESCORE_INSTRUCTION
    name: str = field(default="descore", init=False)
    dimensions: tuple[str, ...] = field(default=DESCORE_DIMENSIONS, init=False)
    rewards: RolloutRewardConfig = field(
        default=RolloutRewardConfig(
            format_weight=0.1,
            quality_weight=0.7,
            length_weight=0.2,
            length_unit="characters",
            length_levels=((500, 0.2), (1000, 0.4), (1500, 0.6), (2000, 1.0)),
            answer_parsing="exact",
        ),
        init=False,
    )
    repetition_penalty: float | None = field(default=1.05, init=False)
    max_new_tokens: int = field(default=4096, init=False)

    def parse(self, text: str) -> Answer:
        if not isinstance(text, str):
            return Answer(reasoning="", scores=None)
        blocks = list(_ANSWER_BLOCK.finditer(text))
        if not blocks:
            return Answer(reasoning=text.strip(), scores=None)
        block = blocks[-1]
        value = _json_object(block.group(1))
        reasoning = text[: block.start()].strip()
        if not isinstance(value, dict) or not isinstance(value.get("dimensional_scores"), dict):
            return Answer(reasoning=reasoning, scores=None)
        written = {str(key).strip().lower(): item for key, item in value["dimensional_scores"].items()}
        scores = {d: normalise_value(written[d]) for d in self.dimensions if d in written}
        scores = {d: v for d, v in scores.items() if v is not None}
        overall = value.get("overall_score")
        try:
            overall = float(overall) if overall is not None and not isinstance(overall, bool) else None
        except (TypeError, ValueError):
            overall = None
        overall = overall if overall is not None and 1.0 <= overall <= 5.0 else None
        return Answer(reasoning=reasoning, scores=scores, overall=overall, well_formed=True)

    def format_answer(self, reasoning: str, scores: dict, overall: float | None = None) -> str:
        body = json.dumps({"dimensional_scores": {d: scores[d] for d in self.dimensions}, "overall_score": overall})
        return f"{reasoning.strip()}\n<answer>\n```json\n{body}\n```\n</answer>"

    def check_truth(self, scores: object) -> str | None:
        if not isinstance(scores, dict) or not scores:
            return f'must map some of {list(self.dimensions)} to 2, 1, 0 or "N/A"'
        for dimension, value in scores.items():
            if dimension not in self.dimensions:
                return f"unknown dimension {dimension!r}; expected some of {list(self.dimensions)}"
            if normalise_value(value) is None:
                return f'[{dimension!r}] = {value!r}, expected 2, 1, 0 or "N/A"'
        return None

    def quality_reward(self, answer: Answer, truth: dict) -> float:
        """The fraction of the ground-truth dimensions predicted exactly ("N/A" included)."""
        if not answer.scores or not truth:
            return 0.0
        hits = sum(answer.scores.get(d) == normalise_value(value) for d, value in truth.items())
        return hits / len(truth)

    def judge_answer(self, text: str, truth: dict, parsing: str) -> tuple[float, float]:
        if parsing == "lenient":
            return super().judge_answer(text, truth, parsing)
        value = exact_answer(text)
        if not isinstance(value, dict) or "dimensional_scores" not in value:
            return 0.0, 0.0
        predicted = value["dimensional_scores"]
        if not isinstance(predicted, dict) or not truth:
            return 1.0, 0.0
        hits = sum(dimension in predicted and predicted[dimension] == want for dimension, want in truth.items())
        return 1.0, hits / len(truth)


# ------------------------------------------------------------------------------------------- likert5

# The five alignment dimensions the paper's annotators compare videos on (section 3.1), scored 1..5.
LIKERT5_DIMENSIONS = ("object", "dynamics", "environment", "style", "camera_movement")
LIKERT5_QUESTIONS = {
    "object": "Are the objects and subjects of the prompt present, complete and correct?",
    "dynamics": "Do they move and act as the prompt says, with plausible motion?",
    "environment": "Are the background, setting and lighting those of the prompt?",
    "style": "Does the visual style (realism, art style, colour, mood) follow the prompt?",
    "camera_movement": "Does the camera move (or stay still) as the prompt says?",
}
LIKERT5_MIN, LIKERT5_MAX = 1, 5

_LIKERT5_INSTRUCTION = """You are an expert judge of AI-generated videos. The video was generated from this prompt:
"{prompt}"

Judge how well the video aligns with the prompt on five dimensions:
{questions}

First think step by step about what you see, dimension by dimension. Then end your answer with one JSON \
object giving each dimension an integer score from {lo} (worst) to {hi} (best), for example:
{example}"""


def likert5_instruction(prompt: str) -> str:
    """The user instruction for one video generated from `prompt` (the video itself goes before it)."""
    questions = "\n".join(f"- {name}: {question}" for name, question in LIKERT5_QUESTIONS.items())
    example = json.dumps({name: 3 for name in LIKERT5_DIMENSIONS})
    return _LIKERT5_INSTRUCTION.format(
        prompt=prompt, questions=questions, lo=LIKERT5_MIN, hi=LIKERT5_MAX, example=example
    )


def likert5_cot(reasoning: str, scores: dict[str, int]) -> str:
    """The canonical CoT text for `reasoning` and `scores` (one integer per dimension)."""
    return f"{reasoning.strip()}\n{json.dumps({name: int(scores[name]) for name in LIKERT5_DIMENSIONS})}"


@dataclass(frozen=True)
class Likert5CoT:
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
        if isinstance(score, bool) or not isinstance(score, int) or not LIKERT5_MIN <= score <= LIKERT5_MAX:
            return None
        scores[name] = score
    return scores


def parse_likert5_cot(text: str) -> Likert5CoT:
    """Split model text into reasoning, sub-scores (the last JSON object) and trailing text. Never raises."""
    if not isinstance(text, str):
        return Likert5CoT(reasoning="", scores=None)
    found = _last_json_object(text)
    if found is None:
        return Likert5CoT(reasoning=text.strip(), scores=None)
    start, end, value = found
    reasoning = text[:start].rstrip()
    if reasoning.endswith("```json"):
        reasoning = reasoning[: -len("```json")].rstrip()
    trailing = text[end:].strip()
    if trailing.startswith("```"):
        trailing = trailing[3:].strip()
    return Likert5CoT(reasoning=reasoning, scores=_valid_scores(value), trailing=trailing)


@dataclass(frozen=True)
class Likert5Rubric(Rubric):
    """This library's first rubric: five dimensions scored 1..5 in a JSON object after the reasoning."""

    instruction_template: str = likert5_instruction(PROMPT_PLACEHOLDER)
    name: str = field(default="likert5", init=False)
    dimensions: tuple[str, ...] = field(default=LIKERT5_DIMENSIONS, init=False)
    rewards: RolloutRewardConfig = field(
        default=RolloutRewardConfig(
            format_weight=1.0,
            quality_weight=1.0,
            length_weight=0.5,
            length_unit="tokens",
            length_levels=((16, 0.5), (64, 1.0), (384, 0.5), (640, 0.0)),
        ),
        init=False,
    )

    def parse(self, text: str) -> Answer:
        parsed = parse_likert5_cot(text)
        well_formed = parsed.scores is not None and bool(parsed.reasoning) and not parsed.trailing
        return Answer(reasoning=parsed.reasoning, scores=parsed.scores, well_formed=well_formed)

    def format_answer(self, reasoning: str, scores: dict, overall: float | None = None) -> str:
        return likert5_cot(reasoning, scores)

    def check_truth(self, scores: object) -> str | None:
        if not isinstance(scores, dict) or set(scores) != set(self.dimensions):
            return f"must map each of {list(self.dimensions)} to an integer"
        for dimension, score in scores.items():
            if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
                return f"[{dimension!r}] = {score!r}, expected an integer 1..5"
        return None

    def quality_reward(self, answer: Answer, truth: dict) -> float:
        """`1 - mean |predicted - true| / 4` over the five dimensions; 0 when the scores do not parse."""
        if answer.scores is None:
            return 0.0
        return 1.0 - sum(abs(answer.scores[d] - truth[d]) for d in self.dimensions) / (4 * len(self.dimensions))


RUBRICS: dict[str, type[Rubric]] = {"descore": DeScoreRubric, "likert5": Likert5Rubric}


def read_instruction_file(path: str | os.PathLike | None) -> str | None:
    """The instruction template written in the text file `path` (UTF-8), or None without a file."""
    return Path(path).read_text(encoding="utf-8") if path else None


def get_rubric(name: str, instruction_template: str | None = None) -> Rubric:
    """The built-in rubric `name`, with its own instruction or `instruction_template`."""
    if name not in RUBRICS:
        raise DeScoreInputError(f"unknown rubric {name!r}; expected one of {sorted(RUBRICS)}")
    return RUBRICS[name]() if instruction_template is None else RUBRICS[name](instruction_template)
