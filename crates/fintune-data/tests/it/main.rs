//! Integration tests of `fintune-data` (one binary).

mod acceptance;
mod dedup_shared_data;
mod fuzz;
mod roundtrip;
mod shared_data;
