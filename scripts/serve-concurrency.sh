#!/usr/bin/env bash
# Aggregate generation speed of `hearth serve` with N concurrent streaming clients against one
# client (issue 6's continuous-batching target: 8 streams >= 2.5x one stream on Qwen2.5-Coder).
#
#   scripts/serve-concurrency.sh [-n STREAMS] [-p TOKENS] [MODEL]
#
#   MODEL: smollm2, gemma3, qwen2 (default qwen2); STREAMS: 8; TOKENS: tokens per answer, 128
#   env:   HEARTH_TEST_MODELS (~/.cache/hearth/test-models)
#
# Greedy /api/generate requests, 8 different prompts; the time includes their prompt processing.
# A temporary store and a free loopback port; the server is stopped at the end. A benchmark, not a
# test: scripts/test.sh does not run it.
set -euo pipefail
# shellcheck source=scripts/lib-llama.sh
source "$(dirname "$0")/lib-llama.sh"

streams=8
predict=128
while getopts "n:p:h" opt; do
  case "$opt" in
    n) streams="$OPTARG" ;;
    p) predict="$OPTARG" ;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
model=$(model_path "${1:-qwen2}")

build_hearth
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export HEARTH_MODELS="$work/store"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export HEARTH_HOST="127.0.0.1:$port"
printf 'FROM %s\n' "$model" >"$work/Modelfile"
"$hearth" create bench -f "$work/Modelfile" >/dev/null 2>&1
HEARTH_NUM_PARALLEL="$streams" "$hearth" serve >"$work/serve.log" 2>&1 &
server=$!
busy=$(cpu_busy)

"$python" - "$port" "$streams" "$predict" "$busy" "$(basename "$model")" <<'PY'
import json, sys, threading, time, urllib.request

port, streams, predict, busy, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
base = f"http://127.0.0.1:{port}"
for _ in range(100):  # the server starts
    try:
        urllib.request.urlopen(base + "/health", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
prompts = [
    "Write a Python function that sorts a list of integers.",
    "Explain what a hash map is.",
    "Write a haiku about the sea.",
    "List five prime numbers and explain why they are prime.",
    "Write a C function that reverses a string.",
    "What is Rust's borrow checker?",
    "Write a SQL query counting users per country.",
    "Describe the TCP handshake.",
]

def run(n, tokens):
    counts = [0] * n
    def one(i):
        body = json.dumps({"model": "bench", "prompt": prompts[i % len(prompts)], "stream": True,
                           "options": {"temperature": 0, "num_predict": tokens}}).encode()
        req = urllib.request.Request(base + "/api/generate", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            for line in r:
                v = json.loads(line)
                if v.get("done"):
                    counts[i] = v["eval_count"]
    start = time.time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.time() - start

run(1, 4)  # loads the model
one_tokens, one_time = run(1, predict)
n_tokens, n_time = run(streams, predict)
one_rate, n_rate = one_tokens / one_time, n_tokens / n_time
print(f"{name}: {predict} tokens per answer; CPUs {busy} busy with other work before the start")
print(f"  1 stream:  {one_tokens} tokens in {one_time:.2f} s = {one_rate:.1f} tok/s")
print(f"  {streams} streams: {n_tokens} tokens in {n_time:.2f} s = {n_rate:.1f} tok/s aggregate")
print(f"  {streams} streams / 1 stream: {n_rate / one_rate:.2f}x")
PY
