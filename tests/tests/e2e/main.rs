//! End-to-end tests: the harness on the wire, and (later) the client against the harness.
//! One test binary; one module per subject.

mod admin;
mod client_core;
mod config;
mod consumer;
mod control_plane;
mod faults;
mod fetch_faults;
mod group_coordinator;
mod groups;
mod hostile_input;
mod idempotence;
mod kip848_consumer;
mod kip848_coordinator;
mod kip848_mixed;
mod kip848_wire;
mod lab;
mod librdkafka_scenarios;
mod patterns;
mod producer;
mod security;
mod statistics;
mod transactions;
mod txn_coordinator;
