//! OpenRouter: the wire types shared with the simulator, and the client apf uses.

pub mod client;
pub mod wire;

pub use client::{ApiError, Client, ErrorClass};
