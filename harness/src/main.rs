//! The `franzy` command line.

fn main() {}
