//! Design notes for reviewers: the threats byok-core defends against and why it is built the
//! way it is. Documentation only; no code.

pub mod threat_model;
