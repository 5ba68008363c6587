#!/usr/bin/env bash
# Compare Hearth's speed with llama.cpp's on the three test models: llama-bench and `hearth bench`,
# same tests (pp512, tg128), same thread count, run back to back per model.
#
#   scripts/bench-vs-llama.sh [-t THREADS] [-r REPETITIONS] [-p N_PROMPT] [-n N_GEN] [MODEL...]
#
#   MODEL: smollm2, gemma3, qwen2 (default: all three)
#   env:   THREADS (2), REPETITIONS (3), N_PROMPT (512), N_GEN (128), HEARTH_TEST_MODELS
#          (~/.cache/hearth/test-models; scripts/fetch-test-models.sh fills it), LLAMA_BENCH (a
#          llama-bench binary to use instead of building one)
#
# llama-bench is built once from the llama-cpp-python 0.3.36 sdist (it vendors llama.cpp) into
# ~/.cache/hearth/llama.cpp; that needs pip, cmake and a C++ compiler. This is a benchmark, not a
# test: scripts/test.sh does not run it.
set -euo pipefail

threads="${THREADS:-2}"
reps="${REPETITIONS:-3}"
n_prompt="${N_PROMPT:-512}"
n_gen="${N_GEN:-128}"
while getopts "t:r:p:n:h" opt; do
  case "$opt" in
    t) threads="$OPTARG" ;;
    r) reps="$OPTARG" ;;
    p) n_prompt="$OPTARG" ;;
    n) n_gen="$OPTARG" ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(smollm2 gemma3 qwen2)

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib-llama.sh"

# llama-bench: reuse the cached build, else build it (once, slow on a small machine).
llama_bench="${LLAMA_BENCH:-$src/build/bin/llama-bench}"
build_llama_tool llama-bench "$llama_bench"

build_hearth

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Other work on the machine skews both tools' numbers: sample how busy the CPUs are just before
# starting and print it with the results.
busy=$(cpu_busy)

for name in "${want[@]}"; do
  model=$(model_path "$name")
  file=$(basename "$model")
  echo "bench   $file: llama.cpp, then hearth ($threads threads, $reps repetitions)" >&2
  "$llama_bench" -m "$model" -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" -o json \
    >"$work/$name.llama.json" 2>"$work/$name.llama.err" ||
    { cat "$work/$name.llama.err" >&2; exit 1; }
  "$hearth" bench "$model" -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" --json \
    >"$work/$name.hearth.json"
done

# One row per model and test; tests are matched by (n_prompt, n_gen), as both tools name them.
"$python" - "$work" "$threads" "$busy" "${want[@]}" <<'EOF'
import json, os, sys

work, threads, busy, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def tests(path):
    with open(path) as f:
        return {(t["n_prompt"], t["n_gen"]): t for t in json.load(f)}

def test_name(key):
    return f"pp{key[0]}" if key[0] else f"tg{key[1]}"

rows = []
mem = None
for name in names:
    llama = tests(f"{work}/{name}.llama.json")
    hearth = tests(f"{work}/{name}.hearth.json")
    for key in sorted(hearth, key=lambda k: (k[0] == 0, k)):
        h, l = hearth[key], llama.get(key)
        mem = h.get("memory_read_bandwidth_gbs", mem)
        speed = lambda t: f"{t['avg_ts']:.2f} ± {t['stddev_ts']:.2f}"
        bw = h.get("weight_bandwidth_gbs")
        rows.append([
            h["model_filename"],
            test_name(key),
            speed(l) if l else "-",
            speed(h),
            f"{h['avg_ts'] / l['avg_ts']:.2f}" if l else "-",
            f"{bw:.1f}" if bw is not None else "",
        ])

header = ["model", "test", "llama.cpp t/s", "hearth t/s", "hearth/llama", "hearth weight GB/s"]
width = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
left = [True, True, False, False, False, False]
def line(cells):
    return "| " + " | ".join(c.ljust(w) if l else c.rjust(w) for c, w, l in zip(cells, width, left)) + " |"
print(f"{threads} threads; memory read bandwidth measured by hearth: {mem:.1f} GB/s; "
      f"CPUs {busy} busy with other work just before the start ({os.cpu_count()} CPUs)")
print(line(header))
print("|" + "|".join("-" * (w + 2) if l else "-" * (w + 1) + ":" for w, l in zip(width, left)) + "|")
for r in rows:
    print(line(r))
EOF
