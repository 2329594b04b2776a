//! wsgate: a WebSocket-first Kubernetes ingress controller and reverse proxy.
//!
//! Data flows one way: `source` -> `translate` -> `ir` -> `proxy` (through an `ArcSwap`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod gwapi;
pub mod http;
pub mod ir;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod reconcile;
pub mod source;
pub mod translate;
