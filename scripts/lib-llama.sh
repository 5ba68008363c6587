# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this file
# Shared by the scripts that compare Hearth with llama.cpp (scripts/bench-vs-llama.sh,
# scripts/startup-vs-llama.sh); sourced, not run. It sets:
#
#   root        the repository
#   models_dir  the test models ($HEARTH_TEST_MODELS, else ~/.cache/hearth/test-models)
#   files       short model name (smollm2, gemma3, qwen2) -> model file name
#   cache, version, src, python
#               where llama.cpp is built: the llama-cpp-python $version sdist (it vendors
#               llama.cpp) unpacked into $cache, its build in $src/build; $python ($PYTHON or
#               python3) runs pip for that
#
# and defines model_path, build_llama_tool, build_hearth, free_port, serve_hearth and cpu_busy (see each).

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models_dir="${HEARTH_TEST_MODELS:-$HOME/.cache/hearth/test-models}"
cache="$HOME/.cache/hearth/llama.cpp"
version=0.3.36
src="$cache/llama_cpp_python-$version/vendor/llama.cpp"
python="${PYTHON:-python3}"

declare -gA files=(
  [smollm2]=smollm2-135m-instruct-q4_1.gguf
  [gemma3]=gemma-3-270m-q4_k_m.gguf
  [qwen2]=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
)

# model_path NAME: print the path of test model NAME; fail (exit 2: unknown name, 1: file missing)
# with a message otherwise. Use as `model=$(model_path "$name")` so that set -e stops the script.
model_path() {
  local file="${files[$1]:-}"
  if [ -z "$file" ]; then
    echo "unknown model '$1' (smollm2, gemma3, qwen2)" >&2
    exit 2
  fi
  if [ ! -f "$models_dir/$file" ]; then
    echo "$models_dir/$file is missing: run scripts/fetch-test-models.sh $1" >&2
    exit 1
  fi
  echo "$models_dir/$file"
}

# build_llama_tool TARGET BINARY: unless BINARY is executable, build llama.cpp's TARGET (llama-bench,
# llama-cli, ...) into $src/build/bin, downloading and unpacking the sdist first if need be (once,
# slow on a small machine; needs pip, cmake and a C++ compiler).
build_llama_tool() {
  local target="$1" binary="$2"
  [ -x "$binary" ] && return
  echo "building $target from llama-cpp-python==$version into $cache" >&2
  mkdir -p "$cache"
  if [ ! -d "$src" ]; then
    "$python" -m pip install --quiet scikit-build-core
    "$python" -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: \
      "llama-cpp-python==$version" -d "$cache"
    tar -xzf "$cache/llama_cpp_python-$version.tar.gz" -C "$cache"
  fi
  cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF >&2
  cmake --build "$src/build" -j"$(nproc)" --target "$target" >&2
}

# build_hearth: cargo build --release the hearth binary; sets $hearth to its path.
build_hearth() {
  echo "building hearth (cargo build --release)" >&2
  (cd "$root" && cargo build --release --quiet -p hearth)
  hearth="$root/target/release/hearth"
}

# cpu_busy: how busy the CPUs are with other work, which skews both tools' numbers, as a
# percentage sampled from /proc/stat over 2 s ("?" where /proc/stat can't be read).
cpu_busy() {
  local a=() b=()
  read -r -a a < <(sed -n 's/^cpu  //p' /proc/stat 2>/dev/null) || true
  sleep 2
  read -r -a b < <(sed -n 's/^cpu  //p' /proc/stat 2>/dev/null) || true
  [ ${#a[@]} -ge 5 ] && [ ${#b[@]} -ge 5 ] || { echo "?"; return; }
  local total=0 idle i
  for i in "${!b[@]}"; do total=$((total + b[i] - a[i])); done
  idle=$((b[3] - a[3] + b[4] - a[4]))
  echo "$(( total > 0 ? 100 * (total - idle) / total : 0 ))%"
}

# free_port: a free TCP port on the loopback interface.
free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# serve_hearth MODEL WORK: starts `hearth serve` ($hearth, see build_hearth) on a free port, with a
# store in WORK holding MODEL (a .gguf file) as `bench`; sets $port and $server (its pid, for the
# caller to kill). The caller's environment (HEARTH_NUM_PARALLEL, ...) reaches the server; the
# server's log is WORK/hearth.log and its web app's database is in WORK.
serve_hearth() {
  export HEARTH_MODELS="$2/store" HEARTH_HOME="$2"
  printf 'FROM %s\n' "$1" >"$2/Modelfile"
  "$hearth" create bench -f "$2/Modelfile" >/dev/null 2>&1
  port=$(free_port)
  HEARTH_HOST="127.0.0.1:$port" "$hearth" serve >"$2/hearth.log" 2>&1 &
  server=$!
}
