// Reads NUL-separated records "<flag><text>" (flag '1' = parse_special) and prints token ids.
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>
static void quiet(enum ggml_log_level l, const char * t, void *) { if (getenv("LLOG")) fputs(t, stderr); }
int main(int argc, char ** argv) {
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    std::string all((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    std::vector<llama_token> toks;
    while (pos < all.size()) {
        size_t end = all.find('\0', pos);
        if (end == std::string::npos) end = all.size();
        std::string rec = all.substr(pos, end - pos);
        pos = end + 1;
        bool parse = rec[0] == '1';
        std::string text = rec.substr(1);
        toks.resize(text.size() * 2 + 16);
        int n = llama_tokenize(vocab, text.data(), text.size(), toks.data(), toks.size(), true, parse);
        if (n < 0) { toks.resize(-n); n = llama_tokenize(vocab, text.data(), text.size(), toks.data(), toks.size(), true, parse); }
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
        printf("\n");
    }
    llama_model_free(model);
    return 0;
}
