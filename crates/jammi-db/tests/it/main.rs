//! The engine's integration tests: one binary, one module per area.

mod support;

mod artifacts;
mod audit;
mod broker;
mod catalog;
mod durability;
mod ephemeral;
mod evidence;
mod embed;
mod faults;
mod federation;
mod follow;
mod fuzz;
mod jobs;
mod model;
mod model_topics;
mod model_vectors;
mod mutable;
mod prepared;
mod s3;
mod security;
mod sources;
mod tenancy;
mod text_search;
mod topics;
mod vectors;
