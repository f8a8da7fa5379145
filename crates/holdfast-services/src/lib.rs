//! The holdfast roles as libraries: ingress, worker handlers, health and metrics endpoints.
