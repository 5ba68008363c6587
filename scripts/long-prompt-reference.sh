#!/usr/bin/env bash
# Regenerate testdata/reference/<model>/long.jsonl: llama.cpp's logits and greedy steps for a
# prompt longer than 512 tokens (scripts/llama-logits/long-prompt.txt), which takes the batched
# kernels, the tiled attention and Gemma 3's sliding window, none of which the short reference
# prompts reach.
#
#   scripts/long-prompt-reference.sh [MODEL...]      MODEL: smollm2, gemma3, qwen2 (default: all)
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
  out="$root/testdata/reference/$(basename "$model" .gguf)/long.jsonl"
  "$tool" "$model" 1024 16 <"$root/scripts/llama-logits/long-prompt.txt" >"$out"
  echo "wrote $out" >&2
done
