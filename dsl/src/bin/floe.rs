//! The `floe` command line (being written).
fn main() {}
