"""Preference pairs: one record type, readers for three file formats, validation before any work.

This project's JSONL schema, one pair per line (paths relative to the JSONL file)::

    {"id": "p0001", "prompt": "a red square moves right", "video_a": "videos/a.mp4", "video_b": "videos/b.mp4",
     "label": "A",                                   # "A", "B" or "tie"
     "dimension_labels": {"object": "A", "dynamics": "tie"},            # optional, any of the five
     "cot_a": "...", "cot_b": "...",                                   # optional pre-collected CoTs
     "scores_a": {"subject": 2, ...}, "scores_b": {...},               # optional sub-scores (stage 2)
     "reward_a": 3.1, "reward_b": 0.4}                                 # optional: a reward model's scores

Also read: the VideoAlign / VideoGen-RewardBench CSV (`path_A, path_B, prompt, VQ, MQ, TA[, Overall]`,
labels `A` / `B` / `same`, paths relative to the CSV) and GenAI-Bench video rows (`prompt,
left_video, right_video, vote_type` in `leftvote` / `rightvote` / `tievote` / `bothbad_vote`; the last
two are ties), as JSONL or parquet. Every problem is reported with its file and row number in one
`DataError`, before training or scoring starts.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import DeScoreInputError, first_line
from .rubrics import RUBRICS
from .video import Video, VideoSampling, load_video

LABELS = {"A": 1, "B": -1, "tie": 0}
CSV_LABELS = {"A": "A", "B": "B", "same": "tie"}
GENAI_VOTES = {"leftvote": "A", "rightvote": "B", "tievote": "tie", "bothbad_vote": "tie"}


class DataError(DeScoreInputError):
    """Problems found in a data file; the message lists each with its file and row."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        if len(problems) == 1:
            super().__init__(problems[0])
            return
        shown = "\n  ".join(problems[:50]) + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else "")
        super().__init__(f"{len(problems)} problem(s) in the data:\n  {shown}")


@dataclass
class PreferencePair:
    """One human comparison of two videos generated from the same prompt."""

    id: str
    prompt: str
    video_a: Path
    video_b: Path
    label: str  # "A", "B" or "tie"
    dimension_labels: dict[str, str] = field(default_factory=dict)
    cot_a: str | None = None
    cot_b: str | None = None
    scores_a: dict[str, int | str] | None = None
    scores_b: dict[str, int | str] | None = None
    reward_a: float | None = None  # what a reward model scored each video (pairs it ranked: Flow-DPO's)
    reward_b: float | None = None
    source: str = ""  # "file:row", for messages

    @property
    def human(self) -> int:
        """+1 when A is preferred, -1 when B is, 0 for a tie."""
        return LABELS[self.label]

    @property
    def winner_and_loser(self) -> tuple[Path, Path]:
        """The preferred video, then the other (A first for a tie)."""
        return (self.video_b, self.video_a) if self.label == "B" else (self.video_a, self.video_b)


def read_text_file(path: Path, what: str = "data file") -> str:
    """The text of `path`, UTF-8 with or without a byte-order mark; `FileNotFoundError` or `DataError`
    naming the file when it is missing, unreadable or in another encoding."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError([f"{path}: cannot read it ({error.strerror or error})"]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        byte = data[error.start]
        raise DataError(
            [f"{path}: not UTF-8 text (byte 0x{byte:02x} at offset {error.start}); save it as UTF-8"]
        ) from None


def jsonl_records(path: Path, text: str, problems: list[str]) -> list[tuple[int, dict]]:
    """`(row, object)` of each non-blank line of `text`; a line that is not a JSON object goes to
    `problems` (file:row) instead."""
    records = []
    for row, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{path}:{row}: not valid JSON ({error.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{path}:{row}: expected a JSON object")
            continue
        records.append((row, record))
    return records


def csv_records(path: Path, text: str, problems: list[str]) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and `(row, record)` of each CSV row of `text`; a row with more or fewer fields than
    the header goes to `problems` (file:row) instead."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    records = []
    for record in reader:
        row = reader.line_num
        if None in record or None in record.values():
            fields = len(header) + len(record.get(None, [])) - sum(v is None for v in record.values())
            problems.append(f"{path}:{row}: {fields} field(s), the header has {len(header)}")
            continue
        records.append((row, record))
    return header, records


def _check_scores(value, where: str, name: str, problems: list[str]) -> dict[str, int | str] | None:
    """Sub-scores in the scale of a built-in rubric (`rubrics.py`); the stage-2 trainer checks them
    against its model's own rubric."""
    if value is None:
        return None
    reasons = {rubric: RUBRICS[rubric]().check_truth(value) for rubric in RUBRICS}
    if all(reasons.values()):
        explained = "; ".join(f"as {rubric}: {reason}" for rubric, reason in reasons.items())
        problems.append(f"{where}: {name} fits no rubric's scale ({explained})")
        return None
    return dict(value)


def validate(pairs: list[PreferencePair], check_files: bool = True) -> list[PreferencePair]:
    """Raise `DataError` listing every empty prompt, unknown label, duplicate id or missing video."""
    problems, seen = [], {}
    for pair in pairs:
        if not isinstance(pair.prompt, str) or not pair.prompt.strip():
            problems.append(f"{pair.source}: empty prompt")
        if pair.label not in LABELS:
            problems.append(f"{pair.source}: label {pair.label!r} is not one of {sorted(LABELS)}")
        for dimension, label in pair.dimension_labels.items():
            if label not in LABELS:
                problems.append(f"{pair.source}: dimension label {dimension}={label!r} is not one of {sorted(LABELS)}")
        if pair.id in seen:
            problems.append(f"{pair.source}: duplicate id {pair.id!r} (first at {seen[pair.id]})")
        seen.setdefault(pair.id, pair.source)
        if check_files:
            for name, path in (("video_a", pair.video_a), ("video_b", pair.video_b)):
                if not path.is_file():
                    problems.append(f"{pair.source}: {name} file not found: {path}")
    if problems:
        raise DataError(problems)
    return pairs


def _validated(pairs: list[PreferencePair], problems: list[str], check_files: bool) -> list[PreferencePair]:
    """`pairs` once `validate` finds nothing more than the row `problems` a reader collected; else `DataError`."""
    try:
        validate(pairs, check_files)
    except DataError as error:
        problems = problems + error.problems
    if problems:
        raise DataError(problems)
    return pairs


def read_jsonl(path: str | Path, limit: int | None = None, check_files: bool = True) -> list[PreferencePair]:
    """Read and validate this project's JSONL schema (see the module docstring)."""
    path = Path(path)
    text = read_text_file(path)
    pairs, problems = [], []
    required = ("id", "prompt", "video_a", "video_b", "label")
    for row, record in jsonl_records(path, text, problems):
        if limit is not None and len(pairs) >= limit:
            break
        where = f"{path}:{row}"
        missing = [key for key in required if key not in record]
        if missing:
            problems.append(f"{where}: missing field(s) {missing}")
            continue
        wrong = _wrong_types(record)
        if wrong:
            problems += [f"{where}: {problem}" for problem in wrong]
            continue
        pairs.append(
            PreferencePair(
                id=str(record["id"]),
                prompt=record["prompt"],
                video_a=path.parent / str(record["video_a"]),
                video_b=path.parent / str(record["video_b"]),
                label=record["label"],
                dimension_labels=dict(record.get("dimension_labels") or {}),
                cot_a=record.get("cot_a"),
                cot_b=record.get("cot_b"),
                scores_a=_check_scores(record.get("scores_a"), where, "scores_a", problems),
                scores_b=_check_scores(record.get("scores_b"), where, "scores_b", problems),
                reward_a=record.get("reward_a"),
                reward_b=record.get("reward_b"),
                source=where,
            )
        )
    return _validated(pairs, problems, check_files)


def _wrong_types(record: dict) -> list[str]:
    """What in a JSONL record has the wrong type (the values themselves are checked by `validate`)."""
    problems = []
    for key in ("prompt", "video_a", "video_b", "label"):
        if not isinstance(record[key], str):
            problems.append(f"{key} must be a string, got {type(record[key]).__name__}")
    for key in ("cot_a", "cot_b"):
        if record.get(key) is not None and not isinstance(record[key], str):
            problems.append(f"{key} must be a string or null, got {type(record[key]).__name__}")
    for key in ("reward_a", "reward_b"):
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append(f"{key} must be a number or null, got {json.dumps(value)[:40]}")
    labels = record.get("dimension_labels")
    if labels is not None and not (isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())):
        problems.append(f'dimension_labels must map dimensions to "A", "B" or "tie", got {json.dumps(labels)[:80]}')
    return problems


def read_manifest(path: str | Path) -> list[tuple[Path, str]]:
    """(video, prompt) rows of a CSV with a `video,prompt` header or of a JSONL of `{"video", "prompt"}`
    objects; video paths are relative to the file. Every bad row is reported with its file:row."""
    path = Path(path)
    text = read_text_file(path, "manifest file")
    problems, rows = [], []
    if path.suffix == ".jsonl":
        records = jsonl_records(path, text, problems)
    else:
        header, records = csv_records(path, text, problems)
        if not {"video", "prompt"} <= set(header):
            raise DataError([f"{path}: expected a CSV header with columns video,prompt, got {header}"])
    for row, record in records:
        video, prompt = (record.get("video"), record.get("prompt")) if isinstance(record, dict) else (None, None)
        if not isinstance(video, str) or not video.strip():
            problems.append(f"{path}:{row}: expected a video path")
        elif not isinstance(prompt, str) or not prompt.strip():
            problems.append(f"{path}:{row}: expected a non-empty prompt")
        else:
            rows.append((path.parent / video, prompt))
    if not rows and not problems:
        problems.append(f"{path}: no rows")
    if problems:
        raise DataError(problems)
    return rows


def pair_record(pair: PreferencePair, folder: Path) -> dict:
    """`pair` as a row of this project's schema, its video paths relative to `folder`."""
    record = {
        "id": pair.id,
        "prompt": pair.prompt,
        "video_a": str(Path(pair.video_a).resolve().relative_to(folder.resolve())),
        "video_b": str(Path(pair.video_b).resolve().relative_to(folder.resolve())),
        "label": pair.label,
    }
    optional = ("dimension_labels", "cot_a", "cot_b", "scores_a", "scores_b")
    record.update({key: getattr(pair, key) for key in optional if getattr(pair, key)})
    record.update({key: getattr(pair, key) for key in ("reward_a", "reward_b") if getattr(pair, key) is not None})
    return record


def write_jsonl(pairs: list[PreferencePair], path: str | Path) -> None:
    """Write pairs in this project's schema, video paths relative to `path`'s folder."""
    from .atomic import atomic_write_text

    folder = Path(path).parent
    atomic_write_text(path, "".join(json.dumps(pair_record(p, folder), ensure_ascii=False) + "\n" for p in pairs))


def table_records(path: Path, problems: list[str]) -> list[tuple[str, dict]]:
    """Rows of a benchmark table, each with where it is (`file:row`): a JSONL file, a parquet file, or a
    folder of parquet files (a local copy of a Hub dataset's configuration, as `hf download --repo-type
    dataset` writes it), read in file-name order."""
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{path}: a folder without parquet files; expected the dataset's *.parquet")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"{path}: no such data file or folder")
    rows = []
    for file in files:
        if file.suffix != ".parquet":
            rows += [(f"{file}:{row}", record) for row, record in jsonl_records(file, read_text_file(file), problems)]
            continue
        try:
            import pyarrow.parquet
        except ImportError:
            raise ImportError("reading parquet needs pyarrow: pip install 'descore-reward[eval]'") from None
        try:
            table = pyarrow.parquet.read_table(file).to_pylist()
        except Exception as error:  # pyarrow raises ArrowInvalid or OSError on a file that is not parquet
            raise DataError([f"{file}: not a readable parquet file ({first_line(error)})"]) from None
        rows += [(f"{file}:{row}", record) for row, record in enumerate(table, start=1)]
    return rows


def read_videoalign_csv(
    path: str | Path, label_column: str | None = None, limit: int | None = None, check_files: bool = True
) -> list[PreferencePair]:
    """Read the VideoAlign / VideoGen-RewardBench CSV (or the same columns as parquet, or a folder of
    them). The pair label comes from `label_column` (default `Overall`); every other label column (VQ,
    MQ, TA, ...) becomes a dimension label. Video paths are relative to the data file."""
    path = Path(path)
    problems = []
    if path.suffix == ".csv" or not (path.is_dir() or path.suffix == ".parquet"):
        columns, records = csv_records(path, read_text_file(path), problems)
    else:
        rows = table_records(path, problems)
        records = [(row, {k: str(v) for k, v in record.items()}) for row, (_, record) in enumerate(rows, 1)]
        columns = list(rows[0][1]) if rows else []
    label_column = label_column or "Overall"
    missing = [c for c in ("path_A", "path_B", "prompt", label_column) if c not in columns]
    if missing:
        hint = " (this file has no Overall column: pass label_column, e.g. 'TA')" if label_column == "Overall" else ""
        raise DataError([f"{path}: missing column(s) {missing}{hint}; found {columns}"])
    dimensions = [c for c in ("VQ", "MQ", "TA", "Overall") if c in columns and c != label_column]
    pairs = []
    for row, record in records:
        if limit is not None and len(pairs) >= limit:
            break
        pairs.append(
            PreferencePair(
                id=f"{path.stem}-{row}",
                prompt=record["prompt"],
                video_a=(path if path.is_dir() else path.parent) / record["path_A"],
                video_b=(path if path.is_dir() else path.parent) / record["path_B"],
                label=CSV_LABELS.get(record[label_column], record[label_column]),
                dimension_labels={d: CSV_LABELS.get(record[d], record[d]) for d in dimensions},
                source=f"{path}:{row}",
            )
        )
    return _validated(pairs, problems, check_files)


def read_genai_bench(
    path: str | Path, video_root: str | Path | None = None, limit: int | None = None, check_files: bool = True
) -> list[PreferencePair]:
    """Read GenAI-Bench video rows (`TIGER-Lab/GenAI-Bench`, configuration `video_generation`: JSONL, parquet
    or a folder of parquet files); videos resolve against `video_root` (default: the data's folder). The
    published rows hold URLs: a URL stands for the file of the same name in `video_root`, where
    `descore download genai-bench` puts them (a missing one is reported with its URL)."""
    path = Path(path)
    root = Path(video_root) if video_root is not None else (path if path.is_dir() else path.parent)
    problems = []
    records = table_records(path, problems)
    pairs = []
    for row, (where, record) in enumerate(records, start=1):
        if limit is not None and len(pairs) >= limit:
            break
        missing = [key for key in ("prompt", "left_video", "right_video", "vote_type") if key not in record]
        if missing:
            problems.append(f"{where}: missing field(s) {missing}")
            continue
        vote = record["vote_type"]
        if vote not in GENAI_VOTES:
            problems.append(f"{where}: vote_type {vote!r} is not one of {sorted(GENAI_VOTES)}")
            continue
        pair = PreferencePair(
            id=str(record.get("id", f"{path.stem}-{row}")),
            prompt=record["prompt"],
            video_a=root / video_file_name(record["left_video"]),
            video_b=root / video_file_name(record["right_video"]),
            label=GENAI_VOTES[vote],
            source=where,
        )
        for name, key in (("video_a", "left_video"), ("video_b", "right_video")):
            local = getattr(pair, name)
            if check_files and not local.is_file():
                url = f" ({record[key]}: download it there)" if is_url(record[key]) else ""
                problems.append(f"{where}: {key} file not found: {local}{url}")
        pairs.append(pair)
    return _validated(pairs, problems, check_files=False)  # files checked above, URLs named


MJ_PREFERENCES = {"Video 1 better": "A", "Video 2 better": "B", "Same": "tie"}


def read_mj_bench_video(
    path: str | Path, video_root: str | Path | None = None, limit: int | None = None, check_files: bool = True
) -> list[PreferencePair]:
    """Read MJ-Bench-Video rows (JSONL, parquet, or a folder of parquet files): `video_0_path` is video A,
    `video_1_path` video B, `overall_preference` the label ("Video 1 better", "Video 2 better", "Same",
    a tie), the prompt in `prompt` or `caption`; every other `*_preference` column becomes a dimension
    label. Videos resolve against `video_root` (default: the data's folder)."""
    path = Path(path)
    root = Path(video_root) if video_root is not None else (path if path.is_dir() else path.parent)
    problems = []
    pairs = []
    for row, (where, record) in enumerate(table_records(path, problems), start=1):
        if limit is not None and len(pairs) >= limit:
            break
        prompt = record.get("prompt", record.get("caption"))
        missing = [key for key in ("video_0_path", "video_1_path", "overall_preference") if key not in record]
        missing += [] if prompt is not None else ["prompt (or caption)"]
        if missing:
            problems.append(f"{where}: missing field(s) {missing}")
            continue
        labels = {}
        for column, value in record.items():
            if column.endswith("_preference") and value not in MJ_PREFERENCES:
                problems.append(f"{where}: {column} {value!r} is not one of {sorted(MJ_PREFERENCES)}")
            elif column.endswith("_preference"):
                labels[column.removesuffix("_preference")] = MJ_PREFERENCES[value]
        if "overall" not in labels:
            continue
        pairs.append(
            PreferencePair(
                id=str(record.get("id", f"{path.stem}-{row}")),
                prompt=prompt,
                video_a=root / video_file_name(record["video_0_path"]),
                video_b=root / video_file_name(record["video_1_path"]),
                label=labels.pop("overall"),
                dimension_labels=labels,
                source=where,
            )
        )
    return _validated(pairs, problems, check_files)


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(str(text)).scheme in ("http", "https")


def video_file_name(location: str) -> str:
    """A row's video as a path under the video folder: a URL's file name, or the path as written."""
    if is_url(location):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(location).path)).name
    return location


OFFICIAL_GSB = {"A": "A", "B": "B", "same": "tie"}
OFFICIAL_VERDICTS = {"video 1 is better": "A", "video 2 is better": "B"}
_PROMPT_PATTERNS = (
    re.compile(r'prompt[^:\n"]{0,40}:\s*"(.+?)"', re.IGNORECASE | re.DOTALL),
    re.compile(r'prompt[^:\n"]{0,40}:\s*(.+?)\s*(?:\n|$)', re.IGNORECASE),
    re.compile(r'"([^"\n]{3,})"'),
)


def prompt_from_problem(problem: str, template: str | None = None) -> str | None:
    """The generation prompt inside one of the authors' `problem` texts: matched against `template`
    (their instruction with `{prompt}`) when given, else found after "prompt:" or in double quotes."""
    text = problem.replace("<video>", "").strip()
    if template is not None:
        before, _, after = template.replace("<video>", "").strip().partition("{prompt}")
        found = re.fullmatch(re.escape(before) + r"(.+?)" + re.escape(after), text, re.DOTALL)
        return found.group(1).strip() if found else None
    for pattern in _PROMPT_PATTERNS:
        found = pattern.search(text)
        if found and found.group(1).strip():
            return found.group(1).strip()
    return None


def read_official_csv(
    path: str | Path, template: str | None = None, check_files: bool = True
) -> tuple[list[PreferencePair], int]:
    """The authors' stage-1 CSV (`videos`, `problem`, `CoT_A`, `CoT_B`, `GSB` in A / B / same / invalid)
    or stage-2 CSV (`videos`, `problem`, `answer` holding `<answer>` JSON with `video_1_scores`,
    `video_2_scores`, `gsb_result`). `videos` is a Python list literal of the two paths (relative to
    the file). Returns the pairs and how many `invalid` rows were skipped; bad rows are reported."""
    path = Path(path)
    problems = []
    header, rows = csv_records(path, read_text_file(path), problems)
    columns = set(header)
    stage = 1 if "GSB" in columns else 2
    needed = {"videos", "problem", "CoT_A", "CoT_B", "GSB"} if stage == 1 else {"videos", "problem", "answer"}
    if not needed <= columns:
        raise DataError([f"{path}: missing column(s) {sorted(needed - columns)}; found {sorted(columns)}"])
    pairs, skipped = [], 0
    for row, record in rows:
        where = f"{path}:{row}"
        try:
            videos = ast.literal_eval(record["videos"])
        except (ValueError, SyntaxError):
            videos = None
        if not (isinstance(videos, (list, tuple)) and len(videos) == 2 and all(isinstance(v, str) for v in videos)):
            problems.append(f"{where}: videos must be a list of two paths, got {record['videos'][:80]!r}")
            continue
        prompt = prompt_from_problem(record["problem"], template)
        if prompt is None:
            problems.append(f"{where}: cannot find the prompt in problem; pass the instruction template")
            continue
        pair = PreferencePair(
            id=f"{path.stem}-{row}",
            prompt=prompt,
            video_a=path.parent / videos[0],
            video_b=path.parent / videos[1],
            label="tie",
            source=where,
        )
        if stage == 1:
            if record["GSB"].strip() == "invalid":
                skipped += 1
                continue
            pair.label = OFFICIAL_GSB.get(record["GSB"].strip(), record["GSB"])
            pair.cot_a, pair.cot_b = record["CoT_A"], record["CoT_B"]
        else:
            answer = re.search(r"<answer>(.*?)(?:</answer>|$)", record["answer"], re.DOTALL)
            try:
                value = json.loads(answer.group(1).strip().strip("`").removeprefix("json")) if answer else None
            except ValueError:
                value = None
            if not isinstance(value, dict) or not {"video_1_scores", "video_2_scores"} <= set(value):
                problems.append(f"{where}: answer must hold <answer> JSON with video_1_scores and video_2_scores")
                continue
            verdict = str(value.get("gsb_result", "")).strip().lower().rstrip(".")
            pair.label = OFFICIAL_VERDICTS.get(verdict, "tie")  # an undecided pair trains GRPO, not BT
            pair.scores_a = _check_scores(value["video_1_scores"], where, "video_1_scores", problems)
            pair.scores_b = _check_scores(value["video_2_scores"], where, "video_2_scores", problems)
        pairs.append(pair)
    return _validated(pairs, problems, check_files), skipped


def read_pairs(path: str | Path, label_column: str | None = None, template: str | None = None) -> list[PreferencePair]:
    """Training pairs from this project's JSONL, the authors' stage-1 or stage-2 CSV (`template`: their
    instruction, to find the prompt in `problem`), or a VideoAlign / VideoGen-RewardBench CSV."""
    path = Path(path)
    if path.suffix != ".csv":
        pairs = read_jsonl(path)
    else:
        header = next(csv.reader(io.StringIO(read_text_file(path), newline="")), [])
        if {"videos", "problem"} <= set(header):
            pairs, skipped = read_official_csv(path, template)
            if skipped:
                print(f"{path}: skipped {skipped} row(s) labelled invalid")
        else:
            pairs = read_videoalign_csv(path, label_column)
    if not pairs:
        raise DataError([f"{path}: holds no pairs; expected one preference pair per line (or CSV row)"])
    return pairs


class PairDataset(torch.utils.data.Dataset):
    """Preference pairs, indexable for a `DataLoader`."""

    def __init__(self, pairs: list[PreferencePair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PreferencePair:
        return self.pairs[index]


@dataclass
class PairBatch:
    """A batch of B pairs with both videos decoded: `videos_a[i]` and `videos_b[i]` belong to `pairs[i]`."""

    pairs: list[PreferencePair]
    videos_a: list[Video]
    videos_b: list[Video]


class PairCollator:
    """Decodes both videos of each pair (in DataLoader workers when there are any) and batches them."""

    def __init__(self, sampling: VideoSampling):
        self.sampling = sampling

    def __call__(self, pairs: list[PreferencePair]) -> PairBatch:
        return PairBatch(
            pairs=pairs,
            videos_a=[load_video(p.video_a, self.sampling) for p in pairs],
            videos_b=[load_video(p.video_b, self.sampling) for p in pairs],
        )
