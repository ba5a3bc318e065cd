//! Integration tests of `fintune-das` through its public API (one test binary).

mod api;
mod props;
mod shared_data;
