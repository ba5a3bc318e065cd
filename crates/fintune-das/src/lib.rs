//! Data-aware stratification.
