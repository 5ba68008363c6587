#!/usr/bin/env bash
# Regenerate the reference records this repository makes itself with llama.cpp (the others are
# copied from the shared reference), in testdata/reference/<model>/:
#   long.jsonl         logits and 16 greedy steps for a prompt longer than 512 tokens
#                      (scripts/llama-logits/long-prompt.txt), which takes the batched kernels, the
#                      tiled attention and Gemma 3's sliding window;
#   q8_0-cache.jsonl   logits and 8 greedy steps for each prompt of generate.jsonl with a q8_0 KV
#                      cache (llama.cpp's -ctk q8_0 -ctv q8_0);
#   embed.jsonl        for each prompt of generate.jsonl, the final hidden states mean-pooled and
#                      scaled to unit length (llama.cpp's --pooling mean --embd-normalize 2).
#
#   scripts/llama-reference.sh [MODEL...]      MODEL: smollm2, gemma3, qwen2 (default: all)
#
# Builds llama.cpp as scripts/bench-vs-llama.sh does (cached in ~/.cache/hearth/llama.cpp), then
# scripts/llama-logits/llama-logits.cpp against it (needs g++). A maintainer's tool, not a test.
set -euo pipefail
# shellcheck source=scripts/lib-llama.sh
source "$(dirname "$0")/lib-llama.sh"

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(smollm2 gemma3 qwen2)

build_llama_tool llama "$src/build/bin/libllama.so"
tool="$cache/llama-logits"
g++ -O2 -std=c++17 -o "$tool" "$root/scripts/llama-logits/llama-logits.cpp" \
  -I"$src/include" -I"$src/ggml/include" -L"$src/build/bin" -lllama -lggml -lggml-base \
  -Wl,-rpath,"$src/build/bin"

for name in "${want[@]}"; do
  model=$(model_path "$name")
  dir="$root/testdata/reference/$(basename "$model" .gguf)"
  "$tool" "$model" 1024 16 <"$root/scripts/llama-logits/long-prompt.txt" >"$dir/long.jsonl"
  "$python" - "$tool" "$model" "$dir" <<'PY'
import json, subprocess, sys
tool, model, folder = sys.argv[1:]
prompts = [json.loads(line)["prompt"] for line in open(f"{folder}/generate.jsonl")]
for file, args in [("q8_0-cache.jsonl", ["8", "q8_0"]), ("embed.jsonl", ["embed"])]:
    with open(f"{folder}/{file}", "w") as out:
        for prompt in prompts:
            run = subprocess.run([tool, model, "512", *args], input=prompt.encode(),
                                 capture_output=True, check=True)
            out.write(run.stdout.decode())
PY
  echo "wrote $dir/long.jsonl, q8_0-cache.jsonl and embed.jsonl" >&2
done
