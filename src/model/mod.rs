//! Typed values shared by the database layer and the workflows above it: the subscription's
//! state machine, the email queue's kinds and states, the bearer-token parser, the GitOps
//! side's health. Nothing here imports another module of the crate, so every layer may use it.

pub mod bearer;
pub mod email;
pub mod git;
pub mod subscription;
