// Writes llama.cpp's reference record for one prompt, in the format of
// testdata/reference/<model>/generate.jsonl: the prompt's tokens (add_special, parse_special),
// the 20 highest logits at its last position after one batched decode, and greedy steps
// [token, margin] (margin: the gap to the runner-up).
//
//   llama-logits MODEL N_CTX N_GREEDY [CACHE_TYPE] < prompt.txt
//   llama-logits MODEL N_CTX embed < prompt.txt
//
// CACHE_TYPE: f16 (default) or q8_0 for both keys and values. `embed` writes instead
// {"prompt", "tokens", "embedding"}: the final hidden states mean-pooled and scaled to unit length
// (llama.cpp's --pooling mean --embd-normalize 2).
//
// Built and run by scripts/llama-reference.sh; 2 threads, CPU, llama.cpp's
// default batch sizes (the prompt runs as micro-batches of 512 tokens, as Hearth's sessions do).
#include "llama.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

static void quiet(enum ggml_log_level, const char *, void *) {}

static void json_string(const std::string & s) {
    std::putchar('"');
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') std::printf("\\%c", c);
        else if (c < 0x20) std::printf("\\u%04x", c);
        else std::putchar(c);
    }
    std::putchar('"');
}

int main(int argc, char ** argv) {
    if (argc != 4 && argc != 5) {
        std::fprintf(stderr, "usage: %s MODEL N_CTX N_GREEDY [f16|q8_0] < prompt.txt\n", argv[0]);
        return 2;
    }
    const bool q8 = argc == 5 && std::string(argv[4]) == "q8_0";
    const bool embed = std::string(argv[3]) == "embed";
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    std::string prompt((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 1;
    auto cp = llama_context_default_params();
    cp.n_ctx = std::atoi(argv[2]);
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    if (embed) {
        cp.embeddings = true;
        cp.pooling_type = LLAMA_POOLING_TYPE_MEAN;
    }
    if (q8) {
        cp.type_k = GGML_TYPE_Q8_0;
        cp.type_v = GGML_TYPE_Q8_0;
    }
    llama_context * ctx = llama_init_from_model(model, cp);
    const llama_vocab * vocab = llama_model_get_vocab(model);
    int n = -llama_tokenize(vocab, prompt.data(), prompt.size(), nullptr, 0, true, true);
    std::vector<llama_token> toks(n);
    llama_tokenize(vocab, prompt.data(), prompt.size(), toks.data(), n, true, true);
    if (llama_decode(ctx, llama_batch_get_one(toks.data(), toks.size()))) return 1;
    if (embed) {
        const float * e = llama_get_embeddings_seq(ctx, 0);
        const int n_embd = llama_model_n_embd(model);
        double norm = 0;
        for (int i = 0; i < n_embd; i++) norm += (double) e[i] * e[i];
        norm = std::sqrt(norm);
        std::printf("{\"prompt\":");
        json_string(prompt);
        std::printf(",\"tokens\":[");
        for (int i = 0; i < n; i++) std::printf("%s%d", i ? "," : "", toks[i]);
        std::printf("],\"embedding\":[");
        for (int i = 0; i < n_embd; i++) std::printf("%s%.7g", i ? "," : "", e[i] / norm);
        std::printf("]}\n");
        return 0;
    }
    const int n_vocab = llama_vocab_n_tokens(vocab);
    auto ranked = [&]() {
        const float * l = llama_get_logits_ith(ctx, -1);
        std::vector<std::pair<float, int>> v(n_vocab);
        for (int i = 0; i < n_vocab; i++) v[i] = {l[i], i};
        std::partial_sort(v.begin(), v.begin() + 20, v.end(),
                          [](auto & a, auto & b) { return a.first > b.first; });
        v.resize(20);
        return v;
    };
    std::printf("{\"prompt\":");
    json_string(prompt);
    std::printf(",\"tokens\":[");
    for (int i = 0; i < n; i++) std::printf("%s%d", i ? "," : "", toks[i]);
    std::printf("],\"top\":[");
    auto top = ranked();
    for (int i = 0; i < 20; i++) std::printf("%s[%d,%.5f]", i ? "," : "", top[i].second, top[i].first);
    std::printf("],\"greedy\":[");
    for (int s = 0; s < std::atoi(argv[3]); s++) {
        auto r = s ? ranked() : top;
        llama_token t = r[0].second;
        std::printf("%s[%d,%.4f]", s ? "," : "", t, r[0].first - r[1].first);
        if (llama_decode(ctx, llama_batch_get_one(&t, 1))) return 1;
    }
    std::printf("]}\n");
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
