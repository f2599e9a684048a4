"""DeScore: think-then-score video reward model. See README.md.

Names are imported on first use, so `descore --help` and `import descore_reward` stay fast; the model
stack (torch, transformers, peft) loads when a model name is first touched.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Comparison": ".modeling",
    "DeScoreConfig": ".modeling",
    "DeScoreModel": ".modeling",
    "ScoreResult": ".modeling",
    "DESCORE_DIMENSIONS": ".rubrics",
    "get_rubric": ".rubrics",
    "Video": ".video",
    "VideoInputError": ".video",
    "VideoSampling": ".video",
    "load_video": ".video",
    "DeScoreReward": ".integrations",
    "WeightedRewards": ".integrations",
    "VLLMEngine": ".engines.vllm_engine",
    "DeScoreClient": ".engines.client",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'descore_reward' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
