//! apf runs a field of LLM agents, one container and one capped OpenRouter key per model, as a
//! declarative experiment. The binary in `main.rs` is a thin shell over this library.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod docker;
pub mod duration;
pub mod expr;
pub mod gateway;
pub mod hash;
pub mod manifest;
pub mod money;
pub mod openrouter;
pub mod plan;
pub mod preflight;
pub mod printer;
pub mod report;
pub mod secret;
pub mod sim;
pub mod state;
pub mod status;
