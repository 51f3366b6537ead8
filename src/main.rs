#![warn(clippy::unwrap_used)]
fn main() {}
