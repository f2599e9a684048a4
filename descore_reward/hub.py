"""DeScore checkpoints on the Hugging Face Hub.

A model name that is not a local folder is a Hub repository id (`org/name`): `checkpoint_folder` resolves
it to its snapshot in the Hub cache, downloading it when online (`revision`, `cache_dir`, the token of
`HF_TOKEN` or `hf auth login`; `HF_HUB_OFFLINE=1` reads the cache only). A local path keeps priority.
`model_card` is the README.md every checkpoint carries; `DeScoreModel.push_to_hub` uploads one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import CheckpointError, first_line

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
LIBRARY = "descore-reward"


def is_repo_id(name: str | os.PathLike) -> bool:
    """Whether `name` reads as a Hub id (`org/name`) rather than a path, and is not a local path."""
    return not Path(name).exists() and bool(REPO_ID.match(str(name)))


def checkpoint_folder(name: str | os.PathLike, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """The local folder of the checkpoint `name`: the path itself, or a Hub id's snapshot (see the module
    docstring). A Hub id that cannot be had raises `CheckpointError` in one line: which id, and what to do."""
    if not is_repo_id(name):
        return Path(name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(str(name), revision=revision, cache_dir=cache_dir))
    except GatedRepoError:
        fix = "accept its terms on the Hub, then log in (`hf auth login` or HF_TOKEN)"
        raise CheckpointError(f"{name}: the Hub repository is gated; {fix}") from None
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"{name}: not a local folder, and no such model on the Hugging Face Hub (a private one needs "
            "`hf auth login` or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{name}: the Hub has no revision {revision!r} of it") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{name}: not a local folder, and not in the Hugging Face cache{' at ' + cache_dir if cache_dir else ''} "
            f"while the Hub is out of reach (HF_HUB_OFFLINE, or no network): run `hf download {name}` where there "
            "is a network and copy the cache here, or give a local folder"
        ) from None
    except HfHubHTTPError as error:
        raise CheckpointError(f"{name}: the Hugging Face Hub answered: {first_line(error)}") from None


def has_descore_config(name: str | os.PathLike, config_name: str) -> bool:
    """Whether `name` (a folder or a Hub id) is a DeScore checkpoint, not a backbone: it holds `config_name`."""
    if not is_repo_id(name):
        return (Path(name) / config_name).is_file()
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        hf_hub_download(str(name), config_name)
        return True
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
        return False


def model_card(config, rubric, license: str = "apache-2.0") -> str:
    """The README.md of a checkpoint: Hub metadata, then what a user needs to score with it (`config` is
    its `DeScoreConfig`, `rubric` its rubric), how it was trained, and its held-out evaluation."""
    base = config.backbone if is_repo_id(config.backbone) else None
    metadata = [f"library_name: {LIBRARY}", f"license: {license}"]
    metadata += [f"base_model: {base}"] if base else []
    metadata += [
        "tags:",
        *[f"- {tag}" for tag in ("descore", "reward-model", "video", "text-to-video", "video-reward")],
    ]
    sampling = config.sampling
    lines = [
        "---",
        *metadata,
        "---",
        "",
        "# DeScore video reward model",
        "",
        "A think-then-score video reward model (DeScore): the VLM writes a chain of thought about a generated",
        "video, then a `<reward>` token and a linear head score it. Load and score with "
        f"[{LIBRARY}](https://pypi.org/project/{LIBRARY}/):",
        "",
        "```python",
        "from descore_reward import DeScoreModel",
        "",
        'model = DeScoreModel.from_pretrained("THIS_REPO", device="cuda")',
        'results = model.score(["video.mp4"], "the prompt the video was generated from")  # think, then score',
        "```",
        "",
        "## Scoring settings",
        "",
        f"- Backbone: `{config.backbone}`; query token `{config.reward_token}`"
        + (f"; ties parameter theta {config.tie_theta}" if config.tie_theta else ""),
        f"- Rubric: `{config.rubric}`; CoT budget {rubric.max_new_tokens} tokens, greedy, repetition penalty "
        f"{rubric.repetition_penalty or 1.0}",
        f"- Video sampling: {sampling.fps:g} frames per second ({sampling.min_frames}-{sampling.max_frames} frames), "
        f"at most {sampling.max_pixels_per_frame} pixels a frame and {sampling.max_total_pixels} in all",
        "- Instruction (`{prompt}` is the generation prompt):",
        "",
        "```text",
        rubric.instruction_template,
        "```",
    ]
    if config.training:
        lines += ["", "## Training", "", "| stage | data | pairs | steps |", "|---|---|---|---|"]
        lines += [f"| {t['stage']} | `{t['data']}` | {t['pairs']} | {t['steps']} |" for t in config.training]
        measured = [t for t in config.training if t.get("evaluation")]
        if measured:
            lines += ["", "## Held-out evaluation", "", "| stage | metric | value |", "|---|---|---|"]
            for t in measured:
                lines += [f"| {t['stage']} | {k} | {v:.4f} |" for k, v in t["evaluation"].items() if k != "step"]
    return "\n".join(lines) + "\n"
