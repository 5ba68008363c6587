//! Built-in templates for models whose GGUF file carries no `tokenizer.chat_template`.
//!
//! They are ordinary Jinja templates rendered by the same sandboxed engine as a file's own
//! template, so content spans and limits work identically. They follow llama.cpp's hard-coded
//! formats (`llm_chat_apply_template`): no BOS is written (the tokenizer adds it when the file
//! asks for it).

/// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
/// `<|im_start|>assistant\n`. The generic fallback (Llama-architecture and Qwen files).
pub(crate) const CHATML: &str = "\
{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
";

/// Gemma (1, 2, 3): `<start_of_turn>{user|model}\n{trimmed content}<end_of_turn>\n`, then
/// `<start_of_turn>model\n`. Gemma has no system role: system texts (trimmed, concatenated) are
/// prepended to the next non-model turn followed by a blank line, as llama.cpp does.
pub(crate) const GEMMA: &str = "\
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- set ns.system = ns.system + (message.content | trim) -%}
{%- else -%}
{%- set role = 'model' if message.role == 'assistant' else message.role -%}
{{- '<start_of_turn>' + role + '\\n' -}}
{%- if ns.system and role != 'model' -%}
{{- ns.system + '\\n\\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{{- (message.content | trim) + '<end_of_turn>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\\n' -}}
{%- endif -%}
";

/// Phi-3: `<|{role}|>\n{content}<|end|>\n` per message, then `<|assistant|>\n`.
pub(crate) const PHI3: &str = "\
{%- for message in messages -%}
{{- '<|' + message.role + '|>\\n' + message.content + '<|end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|assistant|>\\n' -}}
{%- endif -%}
";

/// The built-in template for `general.architecture` = `arch`, if there is one.
pub(crate) fn for_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "gemma" | "gemma2" | "gemma3" | "gemma3n" => Some(GEMMA),
        "phi3" => Some(PHI3),
        "llama" | "qwen" | "qwen2" | "qwen2moe" | "qwen3" | "qwen3moe" => Some(CHATML),
        _ => None,
    }
}
