#!/usr/bin/env bash
# Embedding throughput of Hearth and llama.cpp on the same machine in one run: all-MiniLM-L6-v2
# converted from its Hugging Face files by `hearth create --from` (F16 or TYPE), the same N passages of
# the test corpus (testdata/rag) embedded by both, one at a time.
#
#   scripts/embed-vs-llama.sh [N] [TYPE]   N passages (default 200); TYPE f32, f16 (default) or q8_0
#
# Hearth: one /api/embed request with all N inputs, after a warm-up request (model loaded),
# timed by the client (HTTP and JSON included); it embeds them one at a time. llama.cpp:
# llama-embedding on the same file (one passage a line, --pooling mean; it batches several
# passages per decode), timed from when its model is loaded to its exit (writing the JSON
# included). Both use every core.
set -euo pipefail
source "$(dirname "$0")/lib-llama.sh"
n="${1:-200}"
type="${2:-f16}"
dir="$models_dir/all-minilm-l6-v2"
[ -f "$dir/model.safetensors" ] || { echo "run scripts/fetch-test-models.sh minilm first" >&2; exit 1; }
build_hearth
llama_embedding="$src/build/bin/llama-embedding"
build_llama_tool llama-embedding "$llama_embedding"

work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
HEARTH_MODELS="$work/convert" "$hearth" create minilm --from "$dir" --quantize "$type" >/dev/null
gguf=$(find "$work/convert/blobs" -type f -size +1M | head -1)

# N passages: the corpus's paragraphs, one a line, cycled if there are fewer.
"$python" - "$root/testdata/rag" "$n" >"$work/passages.txt" <<'PY'
import pathlib, sys
paras = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.md")):
    for p in f.read_text().split("\n\n"):
        p = " ".join(p.split())
        if len(p.split()) >= 8:
            paras.append(p)
n = int(sys.argv[2])
for i in range(n):
    print(paras[i % len(paras)])
PY

echo "machine busy before the run: $(cpu_busy)"
start=$(date +%s.%N)
"$llama_embedding" -m "$gguf" -f "$work/passages.txt" --pooling mean -t "$(nproc)" \
  --embd-output-format json >"$work/llama.json" 2>"$work/llama.log"
end=$(date +%s.%N)
# llama-embedding prints no timings with JSON output: its run less the time until it was ready
# (the system_info line's timestamp, minutes.seconds.ms.us since start), i.e. the model load.
ready=$(grep -m1 "system_info" "$work/llama.log" | awk '{split($1, t, "."); print t[1] * 60 + t[2] + t[3] / 1e3 + t[4] / 1e6}')
llama_ms=$("$python" -c "print(($end - $start - $ready) * 1000)")
llama_tokens=$(grep "batch_decode: n_tokens" "$work/llama.log" | sed -E 's/.*n_tokens = ([0-9]+).*/\1/' | paste -sd+ | bc)

serve_hearth "$gguf" "$work"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
"$python" - "$port" "$work/passages.txt" "$llama_ms" "$llama_tokens" "$n" "$type" <<'PY'
import json, sys, time, urllib.request
port, path, llama_ms, llama_tokens, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
texts = open(path).read().splitlines()
def embed(inputs):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/embed",
        data=json.dumps({"model": "bench", "input": inputs}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
embed(texts[:2])
start = time.perf_counter()
out = embed(texts)
secs = time.perf_counter() - start
tokens = out["prompt_eval_count"]
print(f"passages: {n}   tokens: hearth {tokens}, llama.cpp {llama_tokens}   weights: {sys.argv[6]}")
print(f"hearth     {secs * 1000:9.1f} ms  {n / secs:8.1f} passages/s  {tokens / secs:9.1f} tokens/s")
print(f"llama.cpp  {llama_ms:9.1f} ms  {n / (llama_ms / 1000):8.1f} passages/s  {llama_tokens / (llama_ms / 1000):9.1f} tokens/s")
print(f"hearth / llama.cpp passages per second: {(n / secs) / (n / (llama_ms / 1000)):.2f}x")
PY
