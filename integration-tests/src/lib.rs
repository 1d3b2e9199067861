//! Shared helpers live in tests/it.
