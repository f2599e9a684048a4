"""A DeScore server: vLLM's async engine over an exported folder, behind the protocol of `client.py`.

    python -m descore_reward.engines.server --model EXPORT --host 0.0.0.0 --port 8000 [vLLM engine arguments]

(`descore serve` runs this.) vLLM's OpenAI-compatible server cannot carry DeScore's second request (the
CoT's own tokens, then `<reward>`, on the same video) without re-tokenising the CoT's text, so this thin
app hosts vLLM's `AsyncLLM` and sends each video's two requests (`vllm_engine.ScoringRequests`) itself.
Every vLLM engine argument is accepted as on `vllm serve`: `--tensor-parallel-size`, `--data-parallel-size`
(replicas behind one engine client), `--gpu-memory-utilization`, `--max-model-len`, `--dtype`, ...
"""

import asyncio
import sys
import uuid

from ..errors import DeScoreInputError
from .client import decode_video
from .vllm_engine import ENGINE_ARGUMENTS, ENGINE_DEFAULTS, ScoringRequests

DECODING = ("max_new_tokens", "do_sample", "temperature", "top_p", "seed", "repetition_penalty")


def build_app(folder: str, engine_arguments, max_videos_in_flight: int = 1024):
    """The FastAPI app: `GET /health`, `GET /v1/info`, `POST /v1/score` on an `AsyncLLM` built at start-up
    from `engine_arguments` (`vllm.AsyncEngineArgs`). More than `max_videos_in_flight` videos at once are
    answered 503 (busy), which clients retry."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.exceptions import EngineDeadError

    requests = ScoringRequests(folder)
    state = {"in_flight": 0}

    @asynccontextmanager
    async def lifespan(app):
        state["engine"] = AsyncLLM.from_engine_args(engine_arguments)
        yield
        state["engine"].shutdown()

    app = FastAPI(title="DeScore", lifespan=lifespan)

    async def last_output(prompt: dict, parameters):
        final = None
        async for output in state["engine"].generate(prompt, parameters, request_id=uuid.uuid4().hex):
            final = output
        return final

    async def score_one(video, prompt: str, think: bool, decoding: dict, index: int) -> dict:
        request = requests.prompt(video, prompt)
        cot = None
        if think:
            seed = None if decoding["seed"] is None else decoding["seed"] + index
            parameters = requests.cot_parameters(**{**decoding, "seed": seed})
            cot = requests.cot_ids((await last_output(request, parameters)).outputs[0].token_ids)
        reward = requests.reward(
            await last_output(requests.reward_prompt(request, cot or []), requests.reward_parameters())
        )
        return requests.result(video, cot, reward).to_dict()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/info")
    async def info():
        return {"scoring": requests.scoring.to_dict()}

    @app.post("/v1/score")
    async def score(request: Request):
        try:
            body = await request.json()
            think = bool(body.get("think", True))
            decoding = decoding_of(body.get("decoding") or {})
            videos = [decode_video(entry, index) for index, entry in enumerate(body["videos"])]
        except DeScoreInputError as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            return JSONResponse({"error": f"malformed request ({type(error).__name__}: {error})"}, status_code=422)
        if state["in_flight"] + len(videos) > max_videos_in_flight:
            busy = f"busy: {state['in_flight']} videos in flight, at most {max_videos_in_flight}; retry later"
            return JSONResponse({"error": busy}, status_code=503, headers={"Retry-After": "1"})
        state["in_flight"] += len(videos)
        try:
            jobs = [score_one(video, prompt, think, decoding, i) for i, (video, prompt) in enumerate(videos)]
            return {"results": await asyncio.gather(*jobs)}
        except DeScoreInputError as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        except EngineDeadError as error:
            return JSONResponse({"error": f"the vLLM engine stopped ({error})"}, status_code=503)
        finally:
            state["in_flight"] -= len(videos)

    return app


def decoding_of(values: dict) -> dict:
    """A request's decoding settings, checked (`DeScoreInputError` naming the bad one): what
    `ScoringRequests.cot_parameters` takes."""
    unknown = sorted(set(values) - set(DECODING))
    if unknown:
        raise DeScoreInputError(f"decoding: unknown setting(s) {unknown}; expected some of {list(DECODING)}")
    decoding = {name: values.get(name) for name in DECODING}
    checks = {
        "max_new_tokens": lambda v: isinstance(v, int) and v >= 1,
        "temperature": lambda v: isinstance(v, (int, float)) and v > 0,
        "top_p": lambda v: isinstance(v, (int, float)) and 0 < v <= 1,
        "seed": lambda v: isinstance(v, int),
        "repetition_penalty": lambda v: isinstance(v, (int, float)) and v > 0,
        "do_sample": lambda v: isinstance(v, bool),
    }
    for name, check in checks.items():
        if decoding[name] is not None and not check(decoding[name]):
            raise DeScoreInputError(f"decoding: {name}={decoding[name]!r} is not a valid value")
    decoding["do_sample"] = bool(decoding["do_sample"])
    decoding["temperature"] = 1.0 if decoding["temperature"] is None else float(decoding["temperature"])
    decoding["top_p"] = 1.0 if decoding["top_p"] is None else float(decoding["top_p"])
    return decoding


def parse_arguments(argv: list[str] | None = None):
    """This server's arguments and vLLM's engine arguments, with DeScore's fixed and default ones applied."""
    from vllm import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="descore serve", description="DeScore on vLLM's async engine")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-videos-in-flight", type=int, default=1024, help="more at once are answered 503")
    parser = AsyncEngineArgs.add_cli_args(parser)
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args(["--model", args.model]))
    for name, value in ENGINE_ARGUMENTS.items():
        if getattr(args, name) not in (defaults[name], value):
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: DeScore's scoring needs {value}")
        setattr(args, name, value)
    for name, value in ENGINE_DEFAULTS.items():
        if getattr(args, name) == defaults[name]:
            setattr(args, name, value)
    return args, AsyncEngineArgs.from_cli_args(args)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args, engine_arguments = parse_arguments(argv)
    try:
        app = build_app(args.model, engine_arguments, args.max_videos_in_flight)
    except DeScoreInputError as error:
        print(f"descore serve: error: {error}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
