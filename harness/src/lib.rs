//! franzy-harness
