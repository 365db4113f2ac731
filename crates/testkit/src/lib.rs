//! Isolated real resources for tests.
