//! Hugging Face model directories to GGUF (work in progress).
