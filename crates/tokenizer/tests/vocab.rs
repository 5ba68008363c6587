//! Tokenizer behaviour on small hand-built vocabularies (no model files needed).

#![allow(clippy::single_range_in_vec_init)]

use tokenizer::{PreTokenizer, Tokenizer, TokenizerError, Vocab};

/// GPT-2's byte -> character mapping, written out independently of the crate.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let k = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + k).unwrap()
}

fn mapped(s: &str) -> String {
    s.bytes().map(byte_char).collect()
}

/// A byte-level BPE vocabulary: the 256 byte tokens, then the results of `merges` (in mapped
/// form, `"Ġ t"`), then `extra` tokens with their types.
fn bpe_vocab(pre: &str, merges: &[&str], extra: &[(&str, i32)]) -> Vocab {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    for m in merges {
        let merged = m.replace(' ', "");
        if !tokens.contains(&merged) {
            tokens.push(merged);
        }
    }
    let mut types = vec![1; tokens.len()];
    for (t, ty) in extra {
        tokens.push(t.to_string());
        types.push(*ty);
    }
    Vocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: types,
        merges: merges.iter().map(|s| s.to_string()).collect(),
        ..Vocab::default()
    }
}

fn texts(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&i| tok.token_text(i).to_string()).collect()
}

#[test]
fn bpe_merges_lowest_rank_first() {
    // "h e" outranks "e l", so "hel" -> "he" "l", then "he l".
    let v = bpe_vocab("gpt-2", &["h e", "e l", "he l", "l o", "Ġ w"], &[]);
    let tok = Tokenizer::from_parts(v).unwrap();
    assert_eq!(
        texts(&tok, &tok.encode("hello", false, false)),
        ["hel", "lo"]
    );
    assert_eq!(
        texts(&tok, &tok.encode("hello wo", false, false)),
        ["hel", "lo", "Ġw", "o"]
    );
    assert_eq!(
        tok.decode(&tok.encode("hello wo", false, false)),
        "hello wo"
    );
    // Bytes of multi-byte characters are single byte tokens without merges.
    let ids = tok.encode("é", false, false);
    assert_eq!(ids.len(), 2);
    assert_eq!(tok.decode(&ids), "é");
    assert_eq!(tok.token_bytes(ids[0]), &[0xC3]);
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Gpt2));
}

#[test]
fn bpe_merge_ties_go_leftmost() {
    let v = bpe_vocab("gpt-2", &["a a"], &[]);
    let tok = Tokenizer::from_parts(v).unwrap();
    assert_eq!(texts(&tok, &tok.encode("aaa", false, false)), ["aa", "a"]);
    assert_eq!(texts(&tok, &tok.encode("aaaa", false, false)), ["aa", "aa"]);
}

#[test]
fn bpe_long_word_is_fast_and_correct() {
    let v = bpe_vocab("gpt-2", &["a b", "ab ab", "abab abab"], &[]);
    let tok = Tokenizer::from_parts(v).unwrap();
    let word = "ab".repeat(20_000);
    let t = std::time::Instant::now();
    let ids = tok.encode(&word, false, false);
    assert!(t.elapsed().as_secs_f64() < 2.0);
    assert_eq!(ids.len(), 40_000 / 8);
    assert_eq!(tok.decode(&ids), word);
}

#[test]
fn llama3_ignore_merges_takes_whole_words() {
    // "hello" is a token but no merge chain reaches it: llama3 emits it whole.
    let mut v = bpe_vocab("llama-bpe", &["h e"], &[]);
    v.tokens.push("hello".into());
    v.token_types.push(1);
    let gpt2 = Tokenizer::from_parts(Vocab {
        pre: Some("gpt-2".into()),
        ..v.clone()
    })
    .unwrap();
    let llama3 = Tokenizer::from_parts(v).unwrap();
    assert_eq!(
        texts(&llama3, &llama3.encode("hello", false, false)),
        ["hello"]
    );
    assert_eq!(
        texts(&gpt2, &gpt2.encode("hello", false, false)),
        ["he", "l", "l", "o"]
    );
}

#[test]
fn bos_defaults_follow_llama_cpp() {
    let extra = [("<|begin_of_text|>", 3), ("<|end_of_text|>", 3)];
    let mut v = bpe_vocab("llama-bpe", &[], &extra);
    v.special_ids.bos = Some(256);
    v.special_ids.eos = Some(257);
    let tok = Tokenizer::from_parts(v.clone()).unwrap();
    assert!(tok.add_bos(), "llama3 pre-tokenizers add BOS by default");
    assert_eq!(tok.encode("a", true, false), [256, b'a' as u32]);
    assert_eq!(tok.encode("a", false, false), [b'a' as u32]);
    assert!(tok.is_eog(257));

    v.add_bos = Some(false);
    let tok = Tokenizer::from_parts(v.clone()).unwrap();
    assert!(!tok.add_bos());
    assert_eq!(tok.encode("a", true, false), [b'a' as u32]);

    v.add_bos = None;
    v.add_eos = Some(true);
    v.pre = Some("qwen2".into());
    let tok = Tokenizer::from_parts(v).unwrap();
    assert!(!tok.add_bos(), "other BPE pre-tokenizers do not");
    assert_eq!(tok.encode("a", true, false), [b'a' as u32, 257]);
}

#[test]
fn special_tokens_split_longest_first() {
    let extra = [
        ("<|im_start|>", 3),
        ("<|im_end|>", 3),
        ("<|im", 4),
        ("<tool>", 4),
        ("<unk>", 2),
    ];
    let v = bpe_vocab("qwen2", &[], &extra);
    let tok = Tokenizer::from_parts(v).unwrap();
    let id = |t: &str| tok.find_token(t).unwrap();
    let ids = tok.encode("<|im_start|>x<|im_end|>", false, true);
    assert_eq!(ids, [id("<|im_start|>"), b'x' as u32, id("<|im_end|>")]);
    // parse_special = false: control and unknown tokens are text; user-defined still match.
    let ids = tok.encode("<|im_start|><tool><unk>", false, false);
    assert!(!ids.contains(&id("<|im_start|>")));
    assert!(!ids.contains(&id("<unk>")));
    assert!(ids.contains(&id("<|im")));
    assert!(ids.contains(&id("<tool>")));
    assert_eq!(tok.decode(&ids), "<|im_start|><tool><unk>");
    // With parse_special the unknown token is recognised too (and renders as nothing).
    let ids = tok.encode("a<unk>b", false, true);
    assert_eq!(ids, [b'a' as u32, id("<unk>"), b'b' as u32]);
    assert_eq!(tok.decode(&ids), "ab");
    assert_eq!(tok.token_piece(id("<unk>"), true), b"<unk>");
    // <|im_end|> is detected as end-of-generation by its text.
    assert!(tok.is_eog(id("<|im_end|>")));
    assert!(!tok.is_eog(id("<|im_start|>")));
}

#[test]
fn eog_texts_are_forced_to_control() {
    // A NORMAL-typed `<|endoftext|>` is treated as control (llama.cpp overrides the type).
    let v = bpe_vocab("gpt-2", &[], &[("<|endoftext|>", 1)]);
    let tok = Tokenizer::from_parts(v).unwrap();
    let eot = tok.find_token("<|endoftext|>").unwrap();
    assert!(tok.is_eog(eot));
    assert!(tok.is_control(eot));
    assert_eq!(
        tok.encode("a<|endoftext|>", false, true),
        [b'a' as u32, eot]
    );
    assert_ne!(
        tok.encode("a<|endoftext|>", false, false),
        [b'a' as u32, eot]
    );
    assert_eq!(tok.eot(), Some(eot));
}

#[test]
fn protected_ranges_block_special_tokens() {
    let v = bpe_vocab("qwen2", &[], &[("<|im_end|>", 3), ("<tool>", 4)]);
    let tok = Tokenizer::from_parts(v).unwrap();
    let end = tok.find_token("<|im_end|>").unwrap();
    let tool = tok.find_token("<tool>").unwrap();
    let text = "a<|im_end|>b<|im_end|><tool>";
    assert_eq!(
        tok.encode(text, false, true)
            .iter()
            .filter(|&&i| i == end)
            .count(),
        2
    );
    // Protect the first occurrence only (bytes 1..11), and partially overlap <tool>.
    let ids = tok.encode_protected(text, false, &[1..11, 24..25]);
    assert_eq!(ids.iter().filter(|&&i| i == end).count(), 1);
    assert!(!ids.contains(&tool));
    assert_eq!(tok.decode(&ids), "a<|im_end|>b<tool>");
    // Matches are found again right after a protected one.
    let ids = tok.encode_protected("<|im_end|><|im_end|>", false, &[0..3]);
    assert_eq!(ids.last(), Some(&end));
}

#[test]
fn phi3_special_tokens_strip_following_whitespace() {
    let mut v = bpe_vocab("gpt-2", &[], &[("<|user|>", 3), ("<|endoftext|>", 3)]);
    v.model_name = Some("Phi3 mini".into());
    let tok = Tokenizer::from_parts(v.clone()).unwrap();
    let user = tok.find_token("<|user|>").unwrap();
    assert_eq!(
        tok.encode("<|user|>\n  hi", false, true),
        [user, b'h' as u32, b'i' as u32]
    );
    // `<|endoftext|>` keeps its whitespace.
    let eot = tok.find_token("<|endoftext|>").unwrap();
    assert_eq!(
        tok.encode("<|endoftext|> ", false, true),
        [eot, b' ' as u32]
    );
    v.model_name = Some("something else".into());
    let tok = Tokenizer::from_parts(v).unwrap();
    assert_eq!(tok.encode("<|user|>\n", false, true).len(), 2);
}

fn spm_vocab(add_space_prefix: Option<bool>) -> Vocab {
    // (text, score, type)
    let entries: Vec<(String, f32, i32)> = [
        ("<unk>", 0.0, 2),
        ("<s>", 0.0, 3),
        ("</s>", 0.0, 3),
        ("▁", -1.0, 1),
        ("h", -2.0, 1),
        ("e", -2.0, 1),
        ("l", -2.0, 1),
        ("o", -2.0, 1),
        ("he", -3.0, 1),
        ("ll", -4.0, 1),
        ("llo", -5.0, 1),
        ("hello", -6.0, 1),
        ("▁hello", -7.0, 1),
        ("<ctrl>", 0.0, 3),
        ("\n\n", 0.0, 4),
    ]
    .iter()
    .map(|&(t, s, ty)| (t.to_string(), s, ty))
    .chain((0..=255u32).map(|b| (format!("<0x{b:02X}>"), 0.0, 6)))
    .collect();
    Vocab {
        model: "llama".into(),
        tokens: entries.iter().map(|e| e.0.clone()).collect(),
        scores: entries.iter().map(|e| e.1).collect(),
        token_types: entries.iter().map(|e| e.2).collect(),
        add_space_prefix,
        ..Vocab::default()
    }
}

#[test]
fn spm_merges_by_score_with_byte_fallback() {
    let tok = Tokenizer::from_parts(spm_vocab(None)).unwrap();
    assert!(tok.pre_tokenizer().is_none());
    assert!(tok.add_bos());
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos(), Some(2));
    // Default add_space_prefix: " hello" -> "▁hello".
    assert_eq!(
        texts(&tok, &tok.encode("hello", true, false)),
        ["<s>", "▁hello"]
    );
    // Unknown characters fall back to byte tokens.
    let ids = tok.encode("hé", false, false);
    assert_eq!(texts(&tok, &ids), ["▁", "h", "<0xC3>", "<0xA9>"]);
    assert_eq!(tok.decode(&ids), " hé");
    // After a special token the space prefix is added again; user-defined tokens split text.
    let ids = tok.encode("hello<ctrl>hello\n\nhello", false, true);
    assert_eq!(
        texts(&tok, &ids),
        ["▁hello", "<ctrl>", "▁hello", "\n\n", "▁hello"]
    );
    assert_eq!(tok.decode(&ids), " hello hello\n\n hello");
    assert_eq!(
        tok.token_piece(tok.find_token("<ctrl>").unwrap(), true),
        b"<ctrl>"
    );
}

#[test]
fn spm_without_space_prefix() {
    let tok = Tokenizer::from_parts(spm_vocab(Some(false))).unwrap();
    assert_eq!(
        texts(&tok, &tok.encode("hello hello", false, false)),
        ["hello", "▁hello"]
    );
    // Without byte tokens, unknown characters become <unk>.
    let mut v = spm_vocab(Some(false));
    let n = v.tokens.len() - 256;
    v.tokens.truncate(n);
    v.scores.truncate(n);
    v.token_types.truncate(n);
    v.special_ids.unk = Some(0);
    let tok = Tokenizer::from_parts(v).unwrap();
    assert_eq!(
        texts(&tok, &tok.encode("hé", false, false)),
        ["h", "<unk>", "<unk>"]
    );
}

#[test]
fn errors_name_the_problem() {
    let e = Tokenizer::from_parts(Vocab {
        model: "rwkv".into(),
        tokens: vec!["a".into()],
        ..Vocab::default()
    })
    .unwrap_err();
    assert!(matches!(e, TokenizerError::UnsupportedModel { .. }));
    assert!(e.to_string().contains("tokenizer.ggml.model"));

    let mut v = bpe_vocab("gpt-2", &[], &[]);
    v.pre = Some("klingon".into());
    let e = Tokenizer::from_parts(v).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("tokenizer.ggml.pre") && msg.contains("klingon"),
        "{msg}"
    );
    for name in [
        "llama-bpe",
        "qwen2",
        "smollm",
        "gpt-2",
        "default",
        "starcoder",
        "qwen35",
    ] {
        assert!(msg.contains(name), "{msg} lacks {name}");
    }

    let mut v = bpe_vocab("gpt-2", &[], &[]);
    v.merges = vec!["ab".into()];
    let e = Tokenizer::from_parts(v).unwrap_err();
    assert!(
        matches!(e, TokenizerError::BadMerge { index: 0, .. }),
        "{e}"
    );

    let mut v = bpe_vocab("gpt-2", &[], &[]);
    v.token_types.pop();
    let e = Tokenizer::from_parts(v).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.token_type"), "{e}");

    let e = Tokenizer::from_parts(Vocab {
        model: "llama".into(),
        ..Vocab::default()
    })
    .unwrap_err();
    assert!(matches!(e, TokenizerError::EmptyVocab));
}

fn gguf_with(meta: Vec<(&str, gguf::Value)>) -> gguf::Gguf {
    let mut w = gguf::GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v);
    }
    gguf::Gguf::from_bytes(w.to_bytes()).unwrap()
}

fn str_array(items: &[&str]) -> gguf::Value {
    gguf::Value::Array(items.iter().map(|s| gguf::Value::from(*s)).collect())
}

#[test]
fn from_gguf_reads_metadata_and_reports_keys() {
    let tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut toks: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
    toks.push("hi");
    toks.push("<|im_end|>");
    let mut types = vec![gguf::Value::I32(1); 257];
    types.push(gguf::Value::I32(3));
    let g = gguf_with(vec![
        ("tokenizer.ggml.model", "gpt2".into()),
        ("tokenizer.ggml.pre", "qwen2".into()),
        ("tokenizer.ggml.tokens", str_array(&toks)),
        ("tokenizer.ggml.token_type", gguf::Value::Array(types)),
        ("tokenizer.ggml.merges", str_array(&["h i"])),
        ("tokenizer.ggml.eos_token_id", gguf::Value::U32(257)),
        ("tokenizer.ggml.add_bos_token", gguf::Value::Bool(false)),
    ]);
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.vocab_size(), 258);
    assert_eq!(tok.encode("hi<|im_end|>", true, true), [256, 257]);
    assert_eq!(tok.eos(), Some(257));
    assert!(tok.is_eog(257));
    assert_eq!(mapped(" hi"), "Ġhi");

    let g = gguf_with(vec![("tokenizer.ggml.model", "gpt2".into())]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    let g = gguf_with(vec![
        ("tokenizer.ggml.model", "gpt2".into()),
        ("tokenizer.ggml.tokens", str_array(&["a"])),
    ]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");

    let g = gguf_with(vec![
        ("tokenizer.ggml.model", "llama".into()),
        ("tokenizer.ggml.tokens", gguf::Value::U32(3)),
    ]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    let g = gguf_with(vec![]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    let v = bpe_vocab("llama-bpe", &["h e", "l l", "he ll"], &[]);
    let tok = std::sync::Arc::new(Tokenizer::from_parts(v).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let tok = tok.clone();
            std::thread::spawn(move || tok.encode(&format!("hello {i}"), false, false))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let ids = h.join().unwrap();
        assert_eq!(tok.decode(&ids), format!("hello {i}"));
    }
}

/// Gemma 4's vocabulary type: SentencePiece-style text (`▁`), merge ranks, `<0xXX>` fallback.
fn gemma4_vocab() -> Vocab {
    let mut tokens: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<|tool_response>",
        "</s>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut types = vec![3, 3, 3, 2, 3, 1];
    for b in 0..=255u32 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for t in ["▁", "h", "i", "▁h", "▁hi", "\n", "\n\n", "x"] {
        tokens.push(t.to_string());
        types.push(1);
    }
    Vocab {
        model: "gemma4".into(),
        tokens,
        token_types: types,
        merges: vec!["▁ h".into(), "▁h i".into()],
        special_ids: tokenizer::SpecialIds {
            bos: Some(2),
            eos: Some(1),
            ..Default::default()
        },
        add_bos: Some(false),
        ..Vocab::default()
    }
}

#[test]
fn gemma4_style_bpe() {
    let tok = Tokenizer::from_parts(gemma4_vocab()).unwrap();
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Newlines));
    assert!(tok.add_bos(), "llama.cpp forces BOS on for Gemma 4");
    let ids = tok.encode("x hi\n\nhé", true, false);
    assert_eq!(
        texts(&tok, &ids),
        ["<bos>", "x", "▁hi", "\n\n", "h", "<0xC3>", "<0xA9>"]
    );
    assert_eq!(tok.decode(&ids), "x hi\n\nhé");
    // Three newlines: not a token, so split into merged pieces ("\n" "\n" "\n": no merges).
    assert_eq!(
        texts(&tok, &tok.encode("\n\n\n", false, false)),
        ["\n", "\n", "\n"]
    );
    // `</s>` is an ordinary token here (the vocabulary has `<|tool_response>`).
    let s = tok.find_token("</s>").unwrap();
    assert!(!tok.is_eog(s));
    assert!(tok.is_eog(tok.find_token("<|tool_response>").unwrap()));
    assert!(tok.is_eog(1));
}

#[test]
fn end_of_sequence_tag_is_eog_elsewhere() {
    // llama.cpp treats a `</s>` token as end-of-generation (and control) unless the vocabulary
    // is Gemma 4 / PLaMo style, even when it is typed user-defined (Gemma 3's HTML `</s>`).
    let v = bpe_vocab("gpt-2", &[], &[("</s>", 4)]);
    let tok = Tokenizer::from_parts(v).unwrap();
    let s = tok.find_token("</s>").unwrap();
    assert!(tok.is_eog(s));
    assert!(tok.is_control(s));
    assert_eq!(tok.encode("a</s>", false, true), [b'a' as u32, s]);
    assert_ne!(tok.encode("a</s>", false, false), [b'a' as u32, s]);
}
