#!/usr/bin/env bash
# Compare how Hearth and llama.cpp start on the three test models: the time from starting the
# process to the first generated token, and the peak resident memory, of `hearth run` and llama-cli
# answering the same prompt (chat template applied) with one token, same context size, same thread
# count, the two run alternately, back to back, per model.
#
#   scripts/startup-vs-llama.sh [-t THREADS] [-r REPETITIONS] [-c CTX_SIZE] [MODEL...]
#
#   MODEL: smollm2, gemma3, qwen2 (default: all three)
#   env:   THREADS (2), REPETITIONS (5), CTX_SIZE (4096), PROMPT (a one-line request for a haiku),
#          HEARTH_TEST_MODELS (~/.cache/hearth/test-models; scripts/fetch-test-models.sh fills it),
#          LLAMA_CLI (a llama-cli binary to use instead of building one)
#
# Each run is a whole process, timed wall-clock from start to exit: load the model, apply the chat
# template, evaluate the prompt, sample one token (greedy), print it, exit. Both run with their
# defaults otherwise, as a user runs them: llama-cli does its warmup decode first (--no-warmup
# would skip it) and serves the turn through its in-process server. The model file is read into
# the page cache before a model's runs. Printed: the mean and the min time over the repetitions,
# the max peak RSS (/usr/bin/time's %M, else Python's getrusage), and Hearth ÷ llama.cpp for both.
#
# llama-cli is built like llama-bench (see scripts/lib-llama.sh) into ~/.cache/hearth/llama.cpp;
# that needs pip, cmake and a C++ compiler. This is a benchmark, not a test: scripts/test.sh does
# not run it.
set -euo pipefail

threads="${THREADS:-2}"
reps="${REPETITIONS:-5}"
ctx="${CTX_SIZE:-4096}"
prompt="${PROMPT:-Write a haiku about a lighthouse keeper who loves the sea.}"
usage() { sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; }
while getopts "t:r:c:h" opt; do
  case "$opt" in
    t) threads="$OPTARG" ;;
    r) reps="$OPTARG" ;;
    c) ctx="$OPTARG" ;;
    *) usage; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(smollm2 gemma3 qwen2)
for n in "$threads" "$reps" "$ctx"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "'$n' is not a positive number" >&2; usage; exit 2; }
done

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib-llama.sh"

models=()
for name in "${want[@]}"; do
  model_path "$name" >/dev/null # fails on an unknown name or a missing file
  models+=("$models_dir/${files[$name]}")
done

# llama-cli: reuse the cached build, else build it (once, slow on a small machine).
llama_cli="${LLAMA_CLI:-$src/build/bin/llama-cli}"
build_llama_tool llama-cli "$llama_cli"

build_hearth

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# timed FILE COMMAND...: run COMMAND and write "SECONDS PEAK_RSS_KIB" to FILE; COMMAND's status.
if [ -x /usr/bin/time ]; then
  timed() {
    local file="$1" t0="${EPOCHREALTIME:-}" t1 s kib rc=0
    shift
    /usr/bin/time -f '%e %M' -o "$file" "$@" || rc=$?
    t1="${EPOCHREALTIME:-}"
    [ "$rc" -eq 0 ] || return "$rc"
    read -r s kib <"$file"
    # %e has 10 ms steps; bash's clock (5.0 and later) has 1 µs steps.
    if [ -n "$t0" ]; then
      local us=$((10#${t1//[!0-9]/} - 10#${t0//[!0-9]/}))
      s=$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))
    fi
    echo "$s $kib" >"$file"
  }
else
  timed() {
    "$python" -c '
import resource, subprocess, sys, time
t = time.perf_counter()
status = subprocess.call(sys.argv[2:])
t = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    print(f"{t:.6f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=f)
sys.exit(status)' "$@"
  }
fi

# once LOG COMMAND...: time one run, stdin from /dev/null, its output into LOG.out and LOG.err;
# appends "SECONDS PEAK_RSS_KIB" to LOG.runs.
once() {
  local log="$1"
  shift
  if ! timed "$log.time" "$@" </dev/null >"$log.out" 2>"$log.err"; then
    echo "failed: $*" >&2
    tail -n 20 "$log.err" >&2
    exit 1
  fi
  cat "$log.time" >>"$log.runs"
}

# Other work on the machine skews both tools' numbers: sample how busy the CPUs are just before
# starting and print it with the results.
busy=$(cpu_busy)

for model in "${models[@]}"; do
  file=$(basename "$model")
  echo "time    $file: llama-cli and hearth alternately, $reps runs each" \
    "($threads threads, context $ctx)" >&2
  cat "$model" >/dev/null # into the page cache, so that neither pays for reading the disk
  for ((i = 0; i < reps; i++)); do
    once "$work/$file.llama" "$llama_cli" -m "$model" -p "$prompt" -n 1 -st -c "$ctx" \
      -t "$threads" --temp 0
    once "$work/$file.hearth" "$hearth" run --temperature 0 --num-predict 1 --ctx-size "$ctx" \
      --threads "$threads" "$model" "$prompt"
  done
done

"$python" - "$work" "$threads" "$ctx" "$reps" "$busy" "$prompt" "${models[@]##*/}" <<'EOF'
import os, statistics, sys

work, threads, ctx, reps, busy, prompt, names = *sys.argv[1:7], sys.argv[7:]

def first_token(path, llama):
    # hearth prints the answer and a newline; llama-cli prints a banner, then "> PROMPT" and the
    # answer on the next line.
    with open(path, errors="replace") as f:
        text = f.read()
    if llama:
        lines = text.split("\n")
        at = next((i for i, l in enumerate(lines) if l.startswith("> ")), None)
        text = lines[at + 1] if at is not None and at + 1 < len(lines) else "?"
    return repr(text.removesuffix("\n"))

def runs(path):
    with open(path) as f:
        rows = [line.split() for line in f if line.strip()]
    times = [float(r[0]) for r in rows]
    return statistics.mean(times), min(times), max(int(r[1]) for r in rows) / 1024

rows = []
for name in names:
    lm, lmin, lrss = runs(f"{work}/{name}.llama.runs")
    hm, hmin, hrss = runs(f"{work}/{name}.hearth.runs")
    rows.append([
        name,
        f"{lm:.3f} ({lmin:.3f})",
        f"{hm:.3f} ({hmin:.3f})",
        f"{hm / lm:.2f} ({hmin / lmin:.2f})",
        f"{lrss:.0f}",
        f"{hrss:.0f}",
        f"{hrss / lrss:.2f}",
        f"{first_token(f'{work}/{name}.llama.out', True)} / "
        f"{first_token(f'{work}/{name}.hearth.out', False)}",
    ])

header = ["model", "llama.cpp s mean (min)", "hearth s mean (min)", "hearth/llama",
          "llama.cpp MiB", "hearth MiB", "hearth/llama", "first token (llama.cpp / hearth)"]
width = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
left = [True] + [False] * (len(header) - 2) + [True]
def line(cells):
    return "| " + " | ".join(c.ljust(w) if l else c.rjust(w) for c, w, l in zip(cells, width, left)) + " |"
print(f"start to first token (process start to exit, one token) and peak RSS: {threads} threads, "
      f"context {ctx}, {reps} runs each, prompt {prompt!r}; llama-cli with its default warmup; "
      f"CPUs {busy} busy with other work just before the start ({os.cpu_count()} CPUs)")
print(line(header))
print("|" + "|".join("-" * (w + 2) if l else "-" * (w + 1) + ":" for w, l in zip(width, left)) + "|")
for r in rows:
    print(line(r))
EOF
