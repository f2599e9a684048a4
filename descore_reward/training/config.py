"""Trainer configs: the fields every trainer shares (`TrainerConfig`), and loading a config from YAML,
then `key=value` command-line overrides.

Unknown keys are an error naming the file or the override, so a typo never trains silently with a
default.
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from pathlib import Path
from typing import TypeVar

import yaml

from ..errors import DeScoreInputError

Config = TypeVar("Config")

# A plain optimizer step with no loss scaling: fp16 is not offered.
MIXED_PRECISIONS = ("no", "bf16")


@dataclasses.dataclass(kw_only=True)
class TrainerConfig:
    """What the four trainers (cold start, RL, Flow-DPO, Wan GRPO) share; each adds its own fields.

    output_dir: checkpoints (`checkpoint-{step}`, the newest `keep_checkpoints` kept; a rerun resumes
        from the newest), the final weights, curves and tracker logs.
    mixed_precision: "no" (float32) or "bf16" autocast around the forward passes; the trained weights
        stay float32 either way.
    save_every / log_every: a checkpoint, and the tracker's record of the step's metrics, every so many steps.
    report_to: an accelerate tracker ("tensorboard", "wandb", ...) or None.

    What every trainer writes, and how it seeds and draws its data: `training/run.py`.

    A subclass lists config-file keys it renamed in `RENAMED_KEYS` (old -> new): YAML files and overrides
    that still use an old one load, with a warning.
    """

    RENAMED_KEYS: typing.ClassVar[dict[str, str]] = {}

    output_dir: str
    learning_rate: float = 1e-4
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    seed: int = 0
    save_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 1
    report_to: str | None = "tensorboard"

    def __post_init__(self):
        check_values(self)
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise DeScoreInputError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}")


# Values that can be zero (every other count and interval must be at least 1); rates and norms that
# must be positive; weights that must not be negative.
MAY_BE_ZERO = ("seed", "num_workers")
POSITIVE = ("learning_rate", "head_learning_rate", "max_grad_norm")
NOT_NEGATIVE_SUFFIXES = ("_coefficient", "_beta", "weight_decay", "_weight", "_clip", "clip_range", "min_gap")


def check_values(config) -> None:
    """`ValueError` naming the first field whose value has the wrong type (a bool where a number or a
    string goes, a string where a number goes), is not finite, or is out of its range: a count or
    interval below 1, a learning rate or norm not above 0, a weight below 0."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value, hint = getattr(config, field.name), hints[field.name]
        allowed = typing.get_args(hint) or (hint,)
        if value is None and type(None) in allowed:
            continue
        problem = _type_problem(value, allowed)
        if problem is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = _range_problem(field.name, value)
        if problem:
            raise DeScoreInputError(f"config key {field.name!r}: {problem}, got {value!r}")


def _type_problem(value, allowed: tuple) -> str | None:
    if int in allowed and float not in allowed and (isinstance(value, bool) or not isinstance(value, int)):
        return "expected an integer"
    if float in allowed and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return "expected a number"
    if str in allowed and bool not in allowed and not isinstance(value, str):
        return "expected a string (quote it in YAML: no, yes, on and off read as booleans)"
    if bool in allowed and not isinstance(value, bool):
        return "expected true or false"
    return None


def _range_problem(name: str, value: float) -> str | None:
    if not math.isfinite(value):
        return "expected a finite number"
    if isinstance(value, int) and name not in MAY_BE_ZERO and value < 1:  # bools never reach here
        return "expected at least 1"
    if isinstance(value, int) and value < 0:
        return "expected at least 0"
    if name in POSITIVE and value <= 0:
        return "expected a number above 0"
    if name.endswith(NOT_NEGATIVE_SUFFIXES) and value < 0:
        return "expected a number of at least 0"
    return None


def load_config(cls: type[Config], path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """`cls` from the YAML file at `path` (optional) updated by `key=value` overrides."""
    values = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise DeScoreInputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        except OSError as error:
            raise DeScoreInputError(f"{path}: cannot read it ({error.strerror or error})") from None
        if not isinstance(values, dict):
            raise DeScoreInputError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = _renamed(cls, values, str(path))
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DeScoreInputError(f"{path}: unknown config key(s) {unknown}; known keys: {sorted(fields)}")
    for override in overrides or []:
        key, separator, value = override.partition("=")
        key = next(iter(_renamed(cls, {key: None}, f"override {override!r}")))
        if not separator or key not in fields:
            raise DeScoreInputError(f"override {override!r}: expected key=value with key one of {sorted(fields)}")
        values[key] = _parse_override(value, hints[key])
    for key, value in values.items():  # YAML 1.1 reads 2e-5 as a string and 3 as an int
        if hints[key] in (float, float | None) and value is not None and not isinstance(value, bool):
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise DeScoreInputError(f"config key {key!r}: expected a number, got {value!r}") from None
    return cls(**values)


def _renamed(cls, values: dict, source: str) -> dict:
    """`values` with the keys `cls.RENAMED_KEYS` lists under their new names, each with a warning."""
    renamed = {}
    for key, value in values.items():
        new = getattr(cls, "RENAMED_KEYS", {}).get(key)
        if new is not None:
            warnings.warn(f"{source}: config key {key!r} is now {new!r}; reading it as {new!r}", FutureWarning, 2)
        renamed[new or key] = value
    return renamed


def _parse_override(text: str, hint) -> object:
    """A `key=value` override's value: YAML (3 -> int, 1e-4 -> float, [a, b] -> list, null -> None),
    except that a string field keeps its text (`mixed_precision=no` is "no", not false)."""
    allowed = typing.get_args(hint) or (hint,)
    if str in allowed and text not in ("null", "None", "~"):
        return text
    return yaml.safe_load(text)
