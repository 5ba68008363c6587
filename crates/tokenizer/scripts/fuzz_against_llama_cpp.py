#!/usr/bin/env python3
"""Differential fuzzing of this crate's tokenizer against llama.cpp's `llama_tokenize`.

Generates random texts (mixed scripts, whitespace runs, special-token texts, slices of the
reference prompts, random code points), tokenizes each with add_special=true and both
parse_special values through llama.cpp and through `examples/encode_records.rs`, and reports
mismatches per model.

Setup (once):
  1. llama.cpp at the reference commit is vendored in the PyPI sdist `llama-cpp-python==0.3.36`
     (`pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`, unpack, use
     `vendor/llama.cpp`). Build the library:
       cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
         -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
         -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_COMMON=OFF -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=OFF
       cmake --build build --target llama -j2
  2. Build the driver next to this script against it:
       g++ -O2 -std=c++17 llama_tokenize_records.cpp -I$LLAMA/include -I$LLAMA/ggml/include \
         $LLAMA/build/src/libllama.a $LLAMA/build/ggml/src/libggml.a \
         $LLAMA/build/ggml/src/libggml-cpu.a $LLAMA/build/ggml/src/libggml-base.a \
         -lpthread -ldl -lgomp -o llama_tokenize_records
  3. cargo build --release -p tokenizer --example encode_records

Usage: fuzz_against_llama_cpp.py SEED COUNT [MODEL_NAMES,...]
Environment: LLAMA_DRIVER (path of the driver), EXTRA_GGUF_DIR (more .gguf files to include,
e.g. copies of the test models with other `tokenizer.ggml.pre` values).
"""
import random, subprocess, sys, json, os
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.."))
M = os.environ.get("HEARTH_TEST_MODELS", os.path.expanduser("~/.cache/hearth/test-models")) + "/"
models = {
  "smollm": M + "smollm2-135m-instruct-q4_1.gguf",
  "gemma3": M + "gemma-3-270m-q4_k_m.gguf",
  "qwen": M + "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
  "llama3syn": ROOT + "/testdata/reference/synthetic/llama3-synthetic.gguf",
  "phi3syn": ROOT + "/testdata/reference/synthetic/phi3-synthetic.gguf",
  "qwen3syn": ROOT + "/testdata/reference/synthetic/qwen3-synthetic.gguf",
}
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
N = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
random.seed(seed)
specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
            "</s>", "<s>", "<b>", "</b>", "<table>", "<unk>", "<mask>", "[multimodal]", "<tool_call>", "<|fim_prefix|>",
            "<unused12>", "<|im_", "<start_of_image>", "<repo_name>", "<|repo_name|>", "<|user|>", "<|assistant|>", "<|end|>", " <|end|>\n ", "<|user|>\n\t  x"]
pool = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t\n\r.,;:!?-_/\\()[]{}<>=+$^~|`@#%&*\"'") + \
  list("          \n\n\t\t''sStTlLrReEvVmMdD") + \
  ["é","É","ß","Æ","日","本","語","한","국","ǅ","²","٣","\u0301","\u0308","\u00a0","\u2009","\u200b","🦀","👍","\U0001F3FD","🇫","🇷",
   "—","“","”","…","，","。","\u3000","\u0085","ʰ","ф","Ж","α","Ω","ע","ש","ا","ب","\u0e01","\u0e34","अ","\u093f","\uFEFF","\u2028","\x0b","\x0c",
   "\u00ad","\U00010400","\U0001D400","\ufffd","\u2066","\U000E0001","\U0010FFFD","\uE000"]
texts = []
base = []
for d in ["gemma-3-270m-q4_k_m","qwen2.5-coder-0.5b-instruct-q4_k_m"]:
    for f in ["tokenize","generate"]:
        for l in open(f"{ROOT}/testdata/reference/{d}/{f}.jsonl"): base.append(json.loads(l)["prompt"])
big = "\n".join(base)
for i in range(N):
    r = random.random()
    if r < 0.5:
        n = random.randint(1, 40)
        t = "".join(random.choice(pool) if random.random() > 0.08 else random.choice(specials) for _ in range(n))
    elif r < 0.7:
        a = random.randint(0, len(big) - 1); t = big[a:a + random.randint(1, 200)]
    elif r < 0.85:
        n = random.randint(1, 30)
        t = "".join(chr(random.choice([random.randint(0x20, 0x7e), random.randint(0xa0, 0x2fff), random.randint(0x3000, 0xd7ff), random.randint(0xe000, 0xfffd), random.randint(0x10000, 0x10ffff)])) for _ in range(n))
    else:
        w = "".join(random.choice("abcdefghij ") for _ in range(random.randint(50, 400)))
        t = w
    texts.append(t)
recs = []
for t in texts:
    recs.append("1" + t); recs.append("0" + t)
data = "\0".join(recs).encode("utf-8", "surrogatepass")
import glob
for p in glob.glob(os.path.join(os.environ.get("EXTRA_GGUF_DIR", "/nonexistent"), "*.gguf")):
    models[os.path.basename(p)[:-5]] = p
only = sys.argv[3].split(",") if len(sys.argv) > 3 else list(models)
total_bad = 0
for name in only:
    path = models[name]
    a = subprocess.run([os.environ.get("LLAMA_DRIVER", os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_tokenize_records")), path], input=data, capture_output=True)
    b = subprocess.run([os.path.join(ROOT, "target/release/examples/encode_records"), path], input=data, capture_output=True)
    if a.returncode or b.returncode:
        print(name, "failed", a.stderr[-500:], b.stderr[-500:]); continue
    la = a.stdout.decode().split("\n"); lb = b.stdout.decode().split("\n")
    bad = [(recs[i], la[i], lb[i]) for i in range(len(recs)) if la[i] != lb[i]]
    total_bad += len(bad)
    print(f"{name}: {len(recs)-len(bad)}/{len(recs)} match")
    for rec, x, y in bad[:5]:
        print("   ", repr(rec[:120]), "\n      llama.cpp:", x[:300], "\n      ours:     ", y[:300])
print("TOTAL MISMATCHES", total_bad)
