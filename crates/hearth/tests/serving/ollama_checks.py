"""The official `ollama` Python package against `hearth serve`.

    python ollama_checks.py HOST MODEL N_EMBD CHECK...

CHECK: chat, chat_stream, generate, generate_stream, embed, list, pull (of the model
$HEARTH_TEST_PULL, from a plain-http registry), tools, tools_stream, structured (these three
with Qwen2.5-Coder, a model that calls tools). The first failure ends the script with a
traceback.
"""
import json
import math
import os
import sys
from typing import Literal

import ollama
import pydantic

host, model, n_embd, *checks = sys.argv[1:]
n_embd = int(n_embd)
client = ollama.Client(host=host)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "seed": 42, "num_predict": 24}


def check_final(r):
    assert r.done is True, r
    assert r.done_reason in ("stop", "length"), r
    assert r.prompt_eval_count > 0, r
    assert r.eval_count > 0, r
    # Durations are nanoseconds.
    assert r.total_duration > 0 and r.eval_duration > 0, r
    assert r.total_duration >= r.eval_duration, r


def chat():
    r = client.chat(model=model, messages=QUESTION, options=GREEDY)
    assert r.message.role == "assistant", r
    assert r.message.content.strip(), r
    check_final(r)
    r = client.chat(model=model, messages=QUESTION, options={**GREEDY, "num_predict": 3})
    assert r.done_reason == "length" and r.eval_count == 3, r
    return r


def chat_stream():
    whole = client.chat(model=model, messages=QUESTION, options=GREEDY).message.content
    parts = list(client.chat(model=model, messages=QUESTION, options=GREEDY, stream=True))
    assert len(parts) > 2, f"{len(parts)} parts: not streamed"
    assert all(not p.done for p in parts[:-1]), parts
    check_final(parts[-1])
    text = "".join(p.message.content for p in parts)
    assert text == whole, f"streamed {text!r} != whole {whole!r}"


PROMPT = "Why is the sky blue?"


def generate():
    r = client.generate(model=model, prompt=PROMPT, options=GREEDY)
    assert r.response.strip(), r
    check_final(r)
    r = client.generate(model=model, prompt="The capital of France is", raw=True, options=GREEDY)
    assert r.response.strip(), r
    check_final(r)


def generate_stream():
    whole = client.generate(model=model, prompt=PROMPT, options=GREEDY).response
    parts = list(client.generate(model=model, prompt=PROMPT, options=GREEDY, stream=True))
    assert len(parts) > 2, f"{len(parts)} parts: not streamed"
    check_final(parts[-1])
    text = "".join(p.response for p in parts)
    assert text == whole, f"streamed {text!r} != whole {whole!r}"


def embed():
    inputs = ["Why is the sky blue?", "Paris is the capital of France."]
    r = client.embed(model=model, input=inputs)
    assert len(r.embeddings) == 2, r
    for e in r.embeddings:
        assert len(e) == n_embd, f"{len(e)} values, not {n_embd}"
        assert all(math.isfinite(x) for x in e)
        # /api/embed normalises to unit length, as Ollama's does.
        norm = math.sqrt(sum(x * x for x in e))
        assert abs(norm - 1) < 1e-3, norm
    assert r.embeddings[0] != r.embeddings[1]
    assert r.prompt_eval_count > 0, r
    legacy = client.embeddings(model=model, prompt=inputs[0])
    assert len(legacy.embedding) == n_embd, len(legacy.embedding)


def list_():
    listed = client.list().models
    names = [m.model for m in listed]
    for name in os.environ["HEARTH_TEST_MODELS_LISTED"].split(","):
        assert any(n == name or n.startswith(name + ":") for n in names), f"{name} not in {names}"
    for m in listed:
        assert m.size > 0 and m.digest and m.modified_at, m


def pull():
    name = os.environ["HEARTH_TEST_PULL"]
    statuses, sizes = [], {}
    for p in client.pull(name, insecure=True, stream=True):
        statuses.append(p.status)
        if p.digest and p.total:
            assert 0 <= (p.completed or 0) <= p.total, p
            sizes[p.digest] = (p.completed or 0, p.total)
    assert statuses[0].startswith("pulling manifest"), statuses
    assert statuses[-1] == "success", statuses
    assert "writing manifest" in statuses, statuses
    assert sizes, f"no byte progress in {statuses}"
    for digest, (completed, total) in sizes.items():
        assert completed == total, f"{digest}: {completed} of {total} bytes"
    names = [m.model for m in client.list().models]
    assert name in names, f"{name} not in {names} after the pull"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The name of the city"}},
            "required": ["city"],
        },
    },
}
# Qwen2.5-Coder-0.5B calls get_weather(city="Paris") for this question (greedy); given the result
# it answers in text when a user turn follows it (alone, it calls the tool again).
TOOL_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL_RESULT = '{"temperature_c": 22, "sky": "sunny"}'
FOLLOW_UP = {"role": "user", "content": "Summarize that in one sentence."}
TOOL_OPTIONS = {"temperature": 0, "seed": 42, "num_predict": 64}


def answer_with_result(call_message, stream):
    messages = TOOL_QUESTION + [
        call_message,
        {"role": "tool", "tool_name": "get_weather", "content": TOOL_RESULT},
        FOLLOW_UP,
    ]
    options = {**TOOL_OPTIONS, "num_predict": 48}
    if stream:
        parts = list(
            client.chat(model=model, messages=messages, tools=[WEATHER_TOOL], options=options,
                        stream=True)
        )
        check_final(parts[-1])
        assert not any(p.message.tool_calls for p in parts), parts
        text = "".join(p.message.content or "" for p in parts)
    else:
        r = client.chat(model=model, messages=messages, tools=[WEATHER_TOOL], options=options)
        check_final(r)
        assert not r.message.tool_calls, r
        text = r.message.content
    assert text and "22" in text and "sunny" in text.lower(), repr(text)


def tools():
    r = client.chat(model=model, messages=TOOL_QUESTION, tools=[WEATHER_TOOL],
                    options=TOOL_OPTIONS)
    check_final(r)
    calls = r.message.tool_calls
    assert calls and len(calls) == 1, r
    assert calls[0].function.name == "get_weather", r
    assert calls[0].function.arguments["city"] == "Paris", r
    # The message as received goes back with the tool's result.
    answer_with_result(r.message, stream=False)


def tools_stream():
    parts = list(client.chat(model=model, messages=TOOL_QUESTION, tools=[WEATHER_TOOL],
                             options=TOOL_OPTIONS, stream=True))
    check_final(parts[-1])
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert len(calls) == 1, parts
    assert calls[0].function.name == "get_weather", calls
    assert calls[0].function.arguments["city"] == "Paris", calls
    assert "".join(p.message.content or "" for p in parts) == "", parts
    answer_with_result({"role": "assistant", "content": "", "tool_calls": calls}, stream=True)


# Bounded, so that a small model sampled at temperature 1 cannot go on listing languages until
# the token limit cuts the JSON.
class Programmer(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    age: int
    languages: list[Literal["Rust", "Python", "Go"]] = pydantic.Field(max_length=3)


def structured():
    # format: the schema pydantic writes (Ollama's documented way), sampled at temperature 1 so
    # that only the grammar keeps the answer in shape; then format="json".
    messages = [{"role": "user", "content": "Describe a programmer called Ada."}]
    for seed in (1, 2, 3):
        r = client.chat(model=model, messages=messages, format=Programmer.model_json_schema(),
                        options={"temperature": 1.0, "seed": seed, "num_predict": 200})
        check_final(r)
        Programmer.model_validate_json(r.message.content)
    r = client.generate(model=model, prompt="A fact about the sea, in JSON.", format="json",
                        options={"temperature": 1.0, "seed": 4, "num_predict": 200})
    assert isinstance(json.loads(r.response), dict), r


for check in checks:
    globals()["list_" if check == "list" else check]()
    print(f"ok {check}")
