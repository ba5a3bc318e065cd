//! Dynamic weight adapter.
