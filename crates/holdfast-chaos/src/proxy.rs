//! TCP fault proxy.
