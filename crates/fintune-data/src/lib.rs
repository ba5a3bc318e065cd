//! Ingestion of labelled sentiment text into validated Arrow record batches.
