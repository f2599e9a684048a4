"""VBench's own per-pair motion scores (the top-5% flow magnitudes its dynamic degree thresholds), which
its results file does not keep, printed as JSON `{video: [score, ...]}`. Runs in the VBench environment:

    VBENCH_CACHE_DIR=... .venv-vbench/bin/python tests/vbench/motion_scores.py VIDEO.mp4 ...
"""

import json
import os
import sys

import torch
from easydict import EasyDict
from vbench.dynamic_degree import DynamicDegree
from vbench.third_party.RAFT.core.utils_core.utils import InputPadder


def main() -> None:
    weights = os.path.join(os.environ["VBENCH_CACHE_DIR"], "raft_model", "models", "raft-things.pth")
    args = EasyDict(model=weights, small=False, mixed_precision=False, alternate_corr=False)
    dynamic = DynamicDegree(args, torch.device("cpu"))
    scores = {}
    with torch.no_grad():
        for path in sys.argv[1:]:
            frames = dynamic.get_frames(path)
            scores[path] = []
            for image1, image2 in zip(frames[:-1], frames[1:]):
                image1, image2 = InputPadder(image1.shape).pad(image1, image2)
                _, flow = dynamic.model(image1, image2, iters=20, test_mode=True)
                scores[path].append(dynamic.get_score(image1, flow))
    print(json.dumps(scores))


if __name__ == "__main__":
    main()
