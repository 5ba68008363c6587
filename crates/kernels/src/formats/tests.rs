//! Tests of the formats module against hand-built blocks and llama.cpp data.
