//! Lifecycle engine tests.
