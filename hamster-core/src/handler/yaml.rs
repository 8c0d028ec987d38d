//! YAML into JSON values, remembering where each value was written.
