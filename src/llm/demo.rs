//! The built-in offline demo provider.
