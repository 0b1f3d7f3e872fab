//! Shared by the scope tests.
pub(crate) mod rows;
