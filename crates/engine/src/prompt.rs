//! Prompts as tokens: chat conversations through the model's template, and fill-in-the-middle
//! code prompts.

use crate::{EngineError, Model};
use chat::{ChatTemplate, JsonValue, Message};

impl Model {
    /// Tokens of a fill-in-the-middle prompt: the code before the gap and after it, in the
    /// model's FIM markers, prefix first as llama.cpp's infill builds it
    /// (`<FIM_PRE>prefix<FIM_SUF>suffix<FIM_MID>`), the BOS token first where the model adds
    /// one. The markers are the file's `tokenizer.ggml.fim_{pre,suf,mid}_token_id`, else found by
    /// the texts of the code models that have them (Qwen2.5-Coder's `<|fim_prefix|>`...,
    /// StarCoder's `<fim_prefix>`..., CodeLlama's `<PRE>`...); `None` when the model has none.
    /// The code's own text never becomes a special token.
    pub fn fill_in_middle_tokens(&self, prefix: &str, suffix: &str) -> Option<Vec<u32>> {
        let tok = &self.tokenizer;
        let meta = |key: &str| {
            self.gguf
                .get(&format!("tokenizer.ggml.{key}_token_id"))
                .and_then(gguf::Value::as_u64)
                .map(|id| id as u32)
        };
        let [pre, suf, mid] = match [meta("fim_pre"), meta("fim_suf"), meta("fim_mid")] {
            [Some(p), Some(s), Some(m)] => [p, s, m],
            _ => [
                ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
                ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
                ["<PRE>", "<SUF>", "<MID>"],
            ]
            .iter()
            .find_map(|names| {
                let ids = names.map(|n| tok.find_token(n));
                Some([ids[0]?, ids[1]?, ids[2]?])
            })?,
        };
        let mut tokens: Vec<u32> = tok.bos().filter(|_| tok.add_bos()).into_iter().collect();
        tokens.push(pre);
        tokens.extend(tok.encode(prefix, false, false));
        tokens.push(suf);
        tokens.extend(tok.encode(suffix, false, false));
        tokens.push(mid);
        Some(tokens)
    }

    /// Tokens of a chat prompt rendered with the model's template (no tools: see
    /// [`Model::chat_tokens_with`]). Text from the messages never becomes a special token; only
    /// the markers the template writes do.
    pub fn chat_tokens(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, EngineError> {
        self.chat_tokens_with(&self.template, messages, None, add_generation_prompt)
    }

    /// [`Model::chat_tokens`] rendered with `template` (the model's, or one request's own), and
    /// with `tools`, the tool definitions the template gets as `tools`
    /// ([`ChatTemplate::render_with_tools`]). The tools' and the tool calls' strings are kept
    /// from becoming special tokens as contents are.
    pub fn chat_tokens_with(
        &self,
        template: &ChatTemplate,
        messages: &[Message],
        tools: Option<&[JsonValue]>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, EngineError> {
        let rendered = template.render_with_tools(messages, tools, add_generation_prompt)?;
        let tok = &self.tokenizer;
        let mut text = rendered.text.as_str();
        let mut spans = rendered.content_spans;
        // The tokenizer adds BOS itself; a template that writes it too would double it.
        if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
            let bos_text = tok.token_text(bos);
            if !bos_text.is_empty() && text.starts_with(bos_text) {
                let cut = bos_text.len();
                text = &text[cut..];
                spans = spans
                    .into_iter()
                    .map(|r| r.start.saturating_sub(cut)..r.end.saturating_sub(cut))
                    .collect();
            }
        }
        Ok(tok.encode_protected(text, true, &spans))
    }
}
