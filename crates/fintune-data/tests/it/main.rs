//! Integration tests of `fintune-data` (one binary).

mod acceptance;
mod fuzz;
mod roundtrip;
mod shared_data;
