//! End-to-end tests of byok across hosts (filled by later issues).
