//! Code generated from `proto/` by `build.rs`.

/// Version 1 of the schemas (`package rill.v1`).
#[allow(missing_debug_implementations, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/rill.v1.rs"));
}
