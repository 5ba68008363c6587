#!/usr/bin/env python3
"""Writes tensor-less copies of the test models with other tokenizer settings, for
`fuzz_against_llama_cpp.py` (EXTRA_GGUF_DIR): other `tokenizer.ggml.pre` values over the Qwen
and synthetic vocabularies, SentencePiece with `add_space_prefix = true` (Gemma 3's vocabulary),
Gemma 4's `gemma4` vocabulary type (Gemma 3's vocabulary with merges derived from it), and a
Phi-3-named vocabulary (llama.cpp strips whitespace after its special tokens).

Needs the `gguf` Python package (pip install gguf). Usage: make_variant_ggufs.py OUT_DIR
"""
import os, sys
from gguf import GGUFReader, GGUFWriter, GGUFValueType

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.."))
MODELS = os.environ.get("HEARTH_TEST_MODELS", os.path.expanduser("~/.cache/hearth/test-models"))
OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)


def write(path, src, arch, skip=(), extra=()):
    w = GGUFWriter(path, arch)
    for k, f in src.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k in skip:
            continue
        t = f.types[0]
        add = {GGUFValueType.ARRAY: w.add_array, GGUFValueType.STRING: w.add_string,
               GGUFValueType.BOOL: w.add_bool, GGUFValueType.UINT32: w.add_uint32,
               GGUFValueType.INT32: w.add_int32, GGUFValueType.FLOAT32: w.add_float32,
               GGUFValueType.UINT64: w.add_uint64}[t]
        add(k, f.contents())
    for k, v in extra:
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, list):
            w.add_array(k, v)
        else:
            w.add_string(k, v)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    print("wrote", path)


syn = GGUFReader(f"{ROOT}/testdata/reference/synthetic/llama3-synthetic.gguf")
for pre in ["default", "gpt-2", "tekken", "gpt-4o", "falcon", "starcoder", "qwen35", "seed-coder",
            "minicpm5", "bailingmoe", "llama-bpe", "glm4", "deepseek-v3"]:
    write(f"{OUT}/bpe-{pre}.gguf", syn, "llama", {"tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token"},
          [("tokenizer.ggml.pre", pre)])

qwen = GGUFReader(f"{MODELS}/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
for pre in ["tekken", "gpt-4o", "default", "llama-bpe", "qwen35", "minicpm5", "deepseek-v3"]:
    write(f"{OUT}/qwen-pre-{pre}.gguf", qwen, "qwen2", {"tokenizer.ggml.pre"}, [("tokenizer.ggml.pre", pre)])

gemma = GGUFReader(f"{MODELS}/gemma-3-270m-q4_k_m.gguf")
write(f"{OUT}/gemma-add_space_prefix-true.gguf", gemma, "gemma3", {"tokenizer.ggml.add_space_prefix"},
      [("tokenizer.ggml.add_space_prefix", True)])

toks = gemma.fields["tokenizer.ggml.tokens"].contents()
types = gemma.fields["tokenizer.ggml.token_type"].contents()
scores = gemma.fields["tokenizer.ggml.scores"].contents()
index = {t: i for i, t in enumerate(toks)}
merges = []
for i in sorted((i for i in range(len(toks)) if types[i] == 1 and len(toks[i]) >= 2), key=lambda i: -scores[i]):
    t = toks[i]
    for k in range(1, len(t)):
        a, b = t[:k], t[k:]
        if a in index and b in index and " " not in t and "\n" not in t:
            merges.append(a + " " + b)
            break
write(f"{OUT}/gemma4-model.gguf", gemma, "gemma3", {"tokenizer.ggml.model"},
      [("tokenizer.ggml.model", "gemma4"), ("tokenizer.ggml.merges", merges)])

phi = GGUFReader(f"{ROOT}/testdata/reference/synthetic/phi3-synthetic.gguf")
ptoks = list(phi.fields["tokenizer.ggml.tokens"].contents()) + ["</s>", "<unk>", "<s>", "<|user|>", "<|assistant|>", "<|end|>"]
ptypes = list(phi.fields["tokenizer.ggml.token_type"].contents()) + [3, 2, 3, 3, 3, 3]
write(f"{OUT}/phi3named.gguf", phi, "phi3",
      {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "general.name", "phi3.vocab_size"},
      [("general.name", "Phi3 Mini Test"), ("tokenizer.ggml.tokens", ptoks), ("tokenizer.ggml.token_type", ptypes)])
