#!/usr/bin/env bash
# Aggregate generation speed with N concurrent clients against one client, for `hearth serve` and
# for llama.cpp's `llama-server -np N` on the same load, one after the other (issue 6's
# continuous-batching targets: 8 streams >= 2.5x one stream, and >= llama-server, on Qwen2.5).
#
#   scripts/serve-concurrency.sh [-n STREAMS] [-p TOKENS] [-r REPS] [MODEL]
#
#   MODEL: smollm2, gemma3, qwen2 (default qwen2); STREAMS: 8; TOKENS: tokens per answer, 128;
#   REPS: how many times one stream and then all the streams run (default 3; the medians count)
#   env:   HEARTH_TEST_MODELS (~/.cache/hearth/test-models), LLAMA_SERVER (a llama-server binary
#          to use instead of building one, as scripts/bench-vs-llama.sh builds llama-bench)
#
# Greedy /v1/chat/completions requests with 8 different prompts; the time includes their prompt
# processing. Every request's message starts with its own tag (repetition, run, stream), so
# that no measured prompt finds more than the chat template's system prompt in a server's
# cache. Temporary store, free loopback ports; the servers are stopped at the end. A benchmark,
# not a test: scripts/test.sh does not run it.
set -euo pipefail
# shellcheck source=scripts/lib-llama.sh
source "$(dirname "$0")/lib-llama.sh"

streams=8
predict=128
reps=3
while getopts "n:p:r:h" opt; do
  case "$opt" in
    n) streams="$OPTARG" ;;
    p) predict="$OPTARG" ;;
    r) reps="$OPTARG" ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
model=$(model_path "${1:-qwen2}")

llama_server="${LLAMA_SERVER:-$src/build/bin/llama-server}"
build_llama_tool llama-server "$llama_server"
build_hearth
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
busy=$(cpu_busy)
echo "$(basename "$model"): $streams streams of $predict tokens; CPUs $busy busy with other work before the start"

# measure ENGINE PORT: one stream, then $streams at once, against the server on PORT.
measure() {
  "$python" - "$1" "$2" "$streams" "$predict" "$reps" <<'PY'
import json, statistics, sys, threading, time, urllib.request

engine, port = sys.argv[1], sys.argv[2]
streams, predict, reps = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
base = f"http://127.0.0.1:{port}"
for _ in range(600):  # the server starts and loads the model
    try:
        urllib.request.urlopen(base + "/health", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
# Requests for long answers, so that the streams run concurrently to the token limit (an answer
# that ends after a few tokens leaves fewer than N streams for the rest of the run).
prompts = [
    "Write a long story about a lighthouse keeper.",
    "Explain in detail how a hash map works, with examples.",
    "Write a detailed essay about the history of the printing press.",
    "Describe, step by step, how to bake bread at home.",
    "Write a long poem about the sea.",
    "Explain in detail how Rust's borrow checker works, with examples.",
    "Write a detailed tutorial on SQL joins with examples.",
    "Describe in detail how TCP opens, uses and closes a connection.",
]

def run(n, tokens, tag=None):
    counts = [0] * n
    def one(i):
        # The tag first: a measured prompt shares only the system prompt with earlier ones.
        content = "Hello." if tag is None else f"Request {tag}-{i}: {prompts[i % len(prompts)]}"
        body = json.dumps({"model": "bench", "max_tokens": tokens, "temperature": 0,
                           "messages": [{"role": "user", "content": content}]})
        req = urllib.request.Request(base + "/v1/chat/completions", body.encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            counts[i] = json.load(r)["usage"]["completion_tokens"]
    start = time.time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.time() - start

run(1, 4)  # loads the model
ones, alls = [], []
for r in range(reps):
    one_tokens, one_time = run(1, predict, f"{r}a")
    n_tokens, n_time = run(streams, predict, f"{r}b")
    ones.append(one_tokens / one_time)
    alls.append(n_tokens / n_time)
    print(f"  {engine:12} run {r + 1}: 1 stream {ones[-1]:6.1f} tok/s   {streams} streams "
          f"{alls[-1]:6.1f} tok/s aggregate ({n_tokens} tokens in {n_time:.2f} s)   "
          f"{alls[-1] / ones[-1]:.2f}x")
one_rate, n_rate = statistics.median(ones), statistics.median(alls)
print(f"  {engine:12} median of {reps}: 1 stream {one_rate:6.1f} tok/s   {streams} streams "
      f"{n_rate:6.1f} tok/s   {n_rate / one_rate:.2f}x")
PY
}

HEARTH_NUM_PARALLEL="$streams" serve_hearth "$model" "$work"
measure hearth "$port"
kill "$server"
wait "$server" 2>/dev/null || true

port=$(free_port)
"$llama_server" -m "$model" -np "$streams" -c $((streams * 2048)) -t 2 --port "$port" \
  >"$work/llama.log" 2>&1 &
server=$!
measure llama-server "$port"
