"""Where DeScore runs besides Hugging Face `generate` (which `DeScoreModel.score` uses):

- `export`: a checkpoint as a plain Hugging Face folder for vLLM, the head in the LM head's `<reward>` row;
- `vllm_engine`: `VLLMEngine`, `DeScoreModel.score` on a vLLM engine (continuous batching, prefix cache);
- `server`: that engine behind HTTP (`descore serve`), on vLLM's async engine;
- `client`: `DeScoreClient`, the server's scores as `DeScoreModel.score` returns them.
"""
