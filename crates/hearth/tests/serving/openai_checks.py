"""The official `openai` Python package against `hearth serve`.

    python openai_checks.py BASE_URL MODEL N_EMBD CHECK...

CHECK: chat, chat_stream, completions, completions_stream, embeddings, models, tools,
tools_stream, tool_required, structured (the last four with a model that calls tools:
Qwen2.5-Coder). Each asserts on what a user of the package relies on; the first failure ends the
script with a traceback.
"""
import json
import math
import os
import sys
from typing import Literal

import openai
import pydantic

base, model, n_embd, *checks = sys.argv[1:]
n_embd = int(n_embd)
# max_retries=0: the client's own retries would hide a failing request.
client = openai.OpenAI(
    base_url=base + "/v1", api_key=os.environ.get("HEARTH_TEST_KEY", "none"), max_retries=0
)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = dict(temperature=0, seed=42)


def check_usage(usage, completion_tokens=None):
    assert usage is not None, "no usage"
    assert usage.prompt_tokens > 0, usage
    assert usage.completion_tokens > 0, usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
    if completion_tokens is not None:
        assert usage.completion_tokens == completion_tokens, usage


def chat():
    r = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=24, **GREEDY)
    assert r.object == "chat.completion", r
    assert r.model.startswith(model), r.model
    assert len(r.choices) == 1, r
    c = r.choices[0]
    assert c.message.role == "assistant", c
    assert c.message.content and c.message.content.strip(), c
    assert c.finish_reason in ("stop", "length"), c
    check_usage(r.usage)
    # A limit that the answer reaches: finish_reason says so and exactly that many tokens.
    r = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=3, **GREEDY)
    assert r.choices[0].finish_reason == "length", r
    check_usage(r.usage, completion_tokens=3)
    # Log-probabilities, parsed by the package into its own types: greedy, so each chosen token
    # is the most likely of its alternatives.
    r = client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=3, logprobs=True, top_logprobs=2, **GREEDY
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 3, r
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2, t
        assert t.top_logprobs[0].token == t.token, t
        assert math.isclose(t.top_logprobs[0].logprob, t.logprob, abs_tol=1e-6), t
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token, t
    assert "".join(t.token for t in content) == r.choices[0].message.content, r
    return c.message.content


def chat_stream():
    whole = client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=24, **GREEDY
    ).choices[0].message.content
    stream = client.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
        **GREEDY,
    )
    text, finish, usage, chunks = "", None, None, 0
    for chunk in stream:
        chunks += 1
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            assert finish is None, f"a chunk after the one with finish_reason: {chunk}"
            text += c.delta.content or ""
            finish = c.finish_reason
    assert chunks > 2, f"{chunks} chunks: not streamed"
    assert finish in ("stop", "length"), finish
    check_usage(usage)
    assert text == whole, f"streamed {text!r} != whole {whole!r}"


PROMPT = "The capital of France is"


def completions():
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, **GREEDY)
    assert r.object == "text_completion", r
    assert len(r.choices) == 1, r
    assert r.choices[0].text.strip(), r
    assert r.choices[0].finish_reason in ("stop", "length"), r
    check_usage(r.usage)
    # The legacy logprobs: parallel lists, one entry per generated token.
    lp = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=3, logprobs=2, **GREEDY
    ).choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 3, lp
    assert lp.text_offset[0] == 0 and all(l <= 0 for l in lp.token_logprobs), lp
    assert all(lp.tokens[i] in lp.top_logprobs[i] for i in range(3)), lp
    return r.choices[0].text


def completions_stream():
    whole = completions()
    text, finish = "", None
    for chunk in client.completions.create(
        model=model, prompt=PROMPT, max_tokens=8, stream=True, **GREEDY
    ):
        for c in chunk.choices:
            text += c.text
            finish = c.finish_reason or finish
    assert finish in ("stop", "length"), finish
    assert text == whole, f"streamed {text!r} != whole {whole!r}"


def embeddings():
    inputs = ["Why is the sky blue?", "Paris is the capital of France."]
    # The package asks for base64 unless told otherwise, and decodes it itself.
    for encoding in (None, "float"):
        extra = {} if encoding is None else {"encoding_format": encoding}
        r = client.embeddings.create(model=model, input=inputs, **extra)
        assert len(r.data) == 2, r
        for i, d in enumerate(r.data):
            assert d.index == i, d
            assert len(d.embedding) == n_embd, f"{len(d.embedding)} values, not {n_embd}"
            assert all(math.isfinite(x) for x in d.embedding), d
            assert any(x != 0 for x in d.embedding), "an all-zero embedding"
        assert r.data[0].embedding != r.data[1].embedding, "two texts, one embedding"
        assert r.usage.prompt_tokens > 0, r.usage
    single = client.embeddings.create(model=model, input=inputs[0], encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == n_embd, single


def models():
    ids = [m.id for m in client.models.list()]
    expect = os.environ["HEARTH_TEST_MODELS_LISTED"].split(",")
    for name in expect:
        assert any(i == name or i.startswith(name + ":") for i in ids), f"{name} not in {ids}"
    m = client.models.retrieve(ids[0])
    assert m.id == ids[0] and m.object == "model", m


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


def check_weather_answer(text):
    assert text and "22" in text and "sunny" in text.lower(), repr(text)


def tools():
    r = client.chat.completions.create(
        model=model, messages=TOOL_QUESTION, tools=[WEATHER_TOOL], max_tokens=64, **GREEDY
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert c.message.content is None, c
    assert len(c.message.tool_calls) == 1, c
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name == "get_weather", call
    assert json.loads(call.function.arguments)["city"] == "Paris", call
    # The call as received, the tool's result, and the answer in text.
    messages = TOOL_QUESTION + [
        c.message,
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
        FOLLOW_UP,
    ]
    r = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER_TOOL], max_tokens=48, **GREEDY
    )
    c = r.choices[0]
    assert not c.message.tool_calls, c
    assert c.finish_reason == "stop", c
    check_weather_answer(c.message.content)


def tools_stream():
    stream = client.chat.completions.create(
        model=model, messages=TOOL_QUESTION, tools=[WEATHER_TOOL], max_tokens=64, stream=True,
        **GREEDY,
    )
    calls, finish, text = {}, None, ""
    for chunk in stream:
        for c in chunk.choices:
            text += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                acc = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                acc["id"] += d.id or ""
                if d.function is not None:
                    acc["name"] += d.function.name or ""
                    acc["arguments"] += d.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls", finish
    assert text == "", repr(text)
    assert list(calls) == [0], calls
    call = calls[0]
    assert call["name"] == "get_weather" and call["id"].startswith("call_"), call
    assert json.loads(call["arguments"])["city"] == "Paris", call
    messages = TOOL_QUESTION + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT},
        FOLLOW_UP,
    ]
    text, finish = "", None
    for chunk in client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER_TOOL], max_tokens=48, stream=True,
        **GREEDY,
    ):
        for c in chunk.choices:
            assert not c.delta.tool_calls, chunk
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert finish == "stop", finish
    check_weather_answer(text)


def tool_required():
    # Left to itself the model answers this in text (or calls a tool it makes up).
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell me a short joke about cats."}],
        tools=[WEATHER_TOOL], tool_choice="required", max_tokens=64, **GREEDY,
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    call = c.message.tool_calls[0]
    assert call.function.name == "get_weather", call
    assert isinstance(json.loads(call.function.arguments)["city"], str), call


# Bounded, so that a small model sampled at temperature 1 cannot go on listing languages until
# the token limit cuts the JSON.
class Programmer(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    age: int
    languages: list[Literal["Rust", "Python", "Go"]] = pydantic.Field(max_length=3)


DESCRIBE = [{"role": "user", "content": "Describe a programmer called Ada."}]


def structured():
    # The schema pydantic writes, sent as a strict json_schema and parsed back by the package;
    # sampled at temperature 1 so that only the grammar keeps the answer in shape.
    for seed in (1, 2, 3):
        r = client.chat.completions.parse(
            model=model, messages=DESCRIBE, response_format=Programmer, max_tokens=200,
            temperature=1.0, seed=seed,
        )
        assert isinstance(r.choices[0].message.parsed, Programmer), r
    r = client.chat.completions.create(
        model=model, messages=DESCRIBE, response_format={"type": "json_object"}, max_tokens=200,
        temperature=1.0, seed=4,
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict), r


for check in checks:
    globals()[check]()
    print(f"ok {check}")
