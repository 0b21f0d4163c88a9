//! Helpers shared by the integration tests. Not every test module uses
//! every helper, so unused ones are not warnings here.
#![allow(dead_code)]

pub mod chain;
pub mod net;
pub mod node;
