//! HTTP load generator (see the crate description).
