//! The `jammi` binary end to end: one integration-test binary, one module per area.

mod support;

mod artifacts;
mod ballista;
mod commands;
mod crashloop;
mod demo;
mod ephemeral;
mod federation;
mod jobs;
mod mutable;
mod processes;
mod progress;
mod replicas;
mod server;
mod streaming;
mod topics;
mod tour;
mod vectors;
