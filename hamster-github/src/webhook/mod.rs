//! Webhook deliveries into events.
