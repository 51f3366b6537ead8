//! Bolt through tern (written on the Bolt branch).
