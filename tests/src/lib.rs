//! Helpers for the privileged integration tests in `tests/tests/`.
