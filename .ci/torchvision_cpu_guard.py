"""For CI environments that pair the CPU build of torch with PyPI's torchvision (a CUDA build): torchvision's
fake kernels for nms / qnms need its compiled ops, which that build cannot load on the CPU, so importing it
fails. Register them only when the ops exist, as torchvision already does for its other kernels.
Run with the environment's own interpreter: `VENV/bin/python .ci/torchvision_cpu_guard.py`. CI only."""

import importlib.util
import pathlib

path = pathlib.Path(importlib.util.find_spec("torchvision").origin).parent / "_meta_registrations.py"
text = path.read_text()
guarded = "@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda name: lambda fn: fn))("
path.write_text(text.replace("@torch.library.register_fake(", guarded))
