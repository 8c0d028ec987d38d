//! A Hamster [`Queue`](hamster_core::queue::Queue) on Redis.
