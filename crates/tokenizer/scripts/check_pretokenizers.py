#!/usr/bin/env python3
"""Cross-checks the hand-coded pre-tokenizers against a real regex engine.

Feeds random strings through `examples/pretokenize.rs` and through the llama.cpp regexes run by
Python's `regex` package (pip install regex), with llama.cpp's splitting rules (each regex splits
the pieces of the previous one; unmatched text between matches is a piece of its own), and
prints the mismatches per pre-tokenizer.

    cargo build -p tokenizer --example pretokenize
    python3 crates/tokenizer/scripts/check_pretokenizers.py [SEED] [BINARY]
"""
import regex, random, json, subprocess, sys
C = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
llama3 = C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
qwen2 = C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
qwen35 = C + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
seed = C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
W1 = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
W2 = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
tekken = W1 + "|" + W2 + r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
gpt4o = W1 + C + "?|" + W2 + C + r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PRES = {
  "gpt-2": [gpt2], "smollm": [r"\p{N}", gpt2], "llama-bpe": [llama3], "qwen2": [qwen2],
  "qwen35": [qwen35], "seed-coder": [seed], "tekken": [tekken], "gpt-4o": [gpt4o],
  "default": [r"[\p{P}\$\+<=>\^~\|]+", gpt2, r"\p{N}+", r"[0-9][0-9][0-9]"],
  "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", gpt2, r"[0-9][0-9][0-9]"],
  "minicpm5": [r"\p{N}{1,3}", C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
  "gemma4": [r"[^\n]+|[\n]+"],
  "deepseek-v3": [r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                  r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
}
def split(text, rxs):
    segs = [text]
    for rx in rxs:
        r = regex.compile(rx)
        out = []
        for s in segs:
            last = 0
            for m in r.finditer(s):
                if m.start() > last: out.append(s[last:m.start()])
                out.append(m.group()); last = m.end()
            if last < len(s): out.append(s[last:])
        segs = out
    return segs
pool = list("abcxyzABCXYZ 0123456789  \t\n\r\n.,;:!?-_/\\()[]{}<>=+$^~|`@#%&*\"'''sStTmMdDlLrReEvV") + \
       ["é","É","ß","Æ","日","本","한","ǅ","²","٣","\u0301","\u0308","\u00a0","\u2009","\u200b","🦀","👍","\U0001F3FD","—","“","”","…","，","\u3000","\u0085","ʰ"]
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
cases = []
for i in range(6000):
    n = random.randint(1, 25)
    t = "".join(random.choice(pool) for _ in range(n))
    for pre in PRES:
        cases.append((pre, t))
inp = "\n".join(json.dumps({"pre": p, "text": t}) for p, t in cases) + "\n"
binary = sys.argv[2] if len(sys.argv) > 2 else "target/debug/examples/pretokenize"
res = subprocess.run([binary], input=inp.encode(), capture_output=True)
if res.returncode: print(res.stderr.decode()); sys.exit(1)
got = res.stdout.decode().split("\n")
bad = {}
for (pre, t), g in zip(cases, got):
    want = split(t, PRES[pre])
    if json.loads(g) != want:
        bad.setdefault(pre, []).append((t, want, json.loads(g)))
for pre in PRES:
    print(pre, "mismatches:", len(bad.get(pre, [])))
    for t, w, g in bad.get(pre, [])[:4]:
        print("   ", repr(t), "\n      want", w, "\n      got ", g)
