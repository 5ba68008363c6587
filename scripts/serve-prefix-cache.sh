#!/usr/bin/env bash
# Time to first token of a chat's second turn against its first, through `hearth serve`, with a
# long shared system prompt (issue 6's prompt-cache target: the second turn's time to first
# token at most 15% of the first's with an 800-token system prompt). Another conversation runs
# between the two turns, as on a shared server.
#
#   scripts/serve-prefix-cache.sh [MODEL]      MODEL: smollm2, gemma3, qwen2 (default qwen2)
#   env: HEARTH_TEST_MODELS (~/.cache/hearth/test-models)
#
# A benchmark, not a test: scripts/test.sh does not run it.
set -euo pipefail
# shellcheck source=scripts/lib-llama.sh
source "$(dirname "$0")/lib-llama.sh"

case "${1:-}" in -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;; esac
model=$(model_path "${1:-qwen2}")
build_hearth
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

serve_hearth "$model" "$work"
busy=$(cpu_busy)

"$python" - "$port" "$busy" "$(basename "$model")" <<'PY'
import json, sys, time, urllib.request

port, busy, name = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        urllib.request.urlopen(base + "/health", timeout=1)
        break
    except OSError:
        time.sleep(0.1)

# About 800 tokens of system prompt: a made-up house style guide.
rules = [f"Rule {i}: when the user asks about topic {i}, answer in at most {i % 5 + 1} "
         f"sentences, mention the reference code HX-{1000 + i}, and never use the word "
         f"'{['simply', 'obviously', 'just', 'clearly', 'basically'][i % 5]}'." for i in range(30)]
system = "You are the support assistant of a small company. " + " ".join(rules)

def turn(messages):
    """(time to first token, whole answer, the done object)"""
    body = json.dumps({"model": "bench", "messages": messages, "stream": True,
                       "options": {"temperature": 0, "num_predict": 24}}).encode()
    req = urllib.request.Request(base + "/api/chat", body, {"Content-Type": "application/json"})
    start, first, text, done = time.time(), None, "", None
    with urllib.request.urlopen(req) as r:
        for line in r:
            v = json.loads(line)
            if v.get("done"):
                done = v
            elif v["message"]["content"]:
                first = first or time.time() - start
                text += v["message"]["content"]
    return first, text, done

turn([{"role": "user", "content": "Hi"}])  # loads the model
history = [{"role": "system", "content": system},
           {"role": "user", "content": "How do I reset my password?"}]
t1, answer, d1 = turn(history)
turn([{"role": "user", "content": "Tell me a joke about databases."}])  # another conversation
history += [{"role": "assistant", "content": answer},
            {"role": "user", "content": "And if I forgot my username?"}]
t2, _, d2 = turn(history)
print(f"{name}: a {d1['prompt_eval_count']}-token first turn, CPUs {busy} busy with other work before the start")
print(f"  first turn:  {t1 * 1000:7.0f} ms to the first token")
print(f"  second turn: {t2 * 1000:7.0f} ms to the first token "
      f"({d2['prompt_cached_count']} of its {d2['prompt_eval_count']} prompt tokens cached)")
print(f"  second / first: {t2 / t1:.2f}")
PY
