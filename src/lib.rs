pub use hamster_core as core;
