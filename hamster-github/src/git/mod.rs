//! Git workspaces.
