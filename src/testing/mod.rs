//! Helpers for the crate's own (`#[cfg(test)]`) tests, shared by every
//! module so that each does not carry its own copy.

pub(crate) mod redis;
