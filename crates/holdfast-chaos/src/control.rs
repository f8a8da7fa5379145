//! HTTP control API of the fault proxies.
