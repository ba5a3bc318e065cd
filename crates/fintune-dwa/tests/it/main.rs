//! Integration tests of fintune-dwa (one binary; see the submodules).

mod common;
mod props;
mod restore;
mod spec;
mod synthetic;
