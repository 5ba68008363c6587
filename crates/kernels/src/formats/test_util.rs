//! Shared helpers for the format tests.
